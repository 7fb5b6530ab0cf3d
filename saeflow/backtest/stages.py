"""Entry points of the backtest rules: read inputs, call the library, write outputs.

Each stage imports its heavy libraries itself, so the price and news rules start
without torch, scikit-learn or matplotlib (see saeflow/__init__.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from saeflow.backtest.config import (
    BacktestConfig,
    HeadlineFeatureConfig,
    NewsConfig,
    PriceConfig,
)
from saeflow.backtest.market_data import (
    load_djia_news,
    load_headlines,
    load_prices,
    offline_prices,
    price_matrix,
)
from saeflow.backtest.news import build_planted_news, planted_note
from saeflow.workflow.io import write_csv, write_json, write_parquet

log = logging.getLogger("saeflow")


def make_backtest_prices(cfg: PriceConfig, out: str | Path) -> None:
    """Long prices (date, ticker, adj_close) of the tickers and the benchmark."""
    wanted = [*cfg.tickers, *([cfg.benchmark] if cfg.benchmark else [])]
    if cfg.source == "offline":
        prices = offline_prices(wanted, cfg.start_date, cfg.end_date)
    else:
        prices = load_prices(
            cfg.path, cfg.date_column, cfg.ticker_column, cfg.price_column
        )
        missing = sorted(set(wanted) - set(prices["ticker"]))
        if missing:
            raise ValueError(f"{cfg.path}: no prices for ticker(s) {missing}")
        prices = prices[prices["ticker"].isin(wanted)]
    write_parquet(prices, out)


def make_backtest_news(
    cfg: NewsConfig,
    scenario: str,
    prices: str | Path,
    tickers: list[str],
    seed: int,
    out: str | Path,
) -> None:
    """Dated headlines of one scenario: planted synthetic ones, or the user's."""
    if cfg.source == "synthetic":
        closes = price_matrix(pd.read_parquet(prices))[tickers]
        news = build_planted_news(
            closes, cfg.n_headlines, cfg.planted[scenario], cfg.neutral_fraction, seed
        )
        news["note"] = planted_note(cfg.planted[scenario])
    elif cfg.source == "djia":
        news = load_djia_news(cfg.path, cfg.djia_ticker).assign(note="user data")
    else:
        news = load_headlines(
            cfg.path, cfg.timestamp_column, cfg.ticker_column, cfg.text_column
        ).assign(note="user data")
    log.info("%s: %d headlines (%s)", scenario, len(news), news["note"].iloc[0])
    write_parquet(news, out)


def make_headline_features(
    news: str | Path,
    model_ref: str,
    saes: dict[int, str],
    specialization: dict[int, str],
    cfg: HeadlineFeatureConfig,
    exclude_special: bool,
    device: str,
    out: str | Path,
) -> None:
    """Features of every headline (see saeflow.backtest.headline_features)."""
    from saeflow.backtest.headline_features import headline_features, top_specialized
    from saeflow.workflow.device import pick_device

    df = pd.read_parquet(news)
    ids = {
        layer: top_specialized(pd.read_parquet(path), cfg.top_features, str(path))
        for layer, path in specialization.items()
    }
    feats = headline_features(
        df["text"].tolist(),
        model_ref,
        saes,
        ids,
        cfg.sentiment,
        cfg.pooling,
        exclude_special,
        cfg.batch_size,
        cfg.max_length,
        pick_device(device),
    )
    keep = ["doc_id", "timestamp", "ticker", "note"]
    write_parquet(pd.concat([df[keep], feats], axis=1), out)


def make_backtest(
    features: str | Path,
    prices: str | Path,
    labels: str | None,
    cfg: BacktestConfig,
    seed: int,
    threads: int,
    outs: dict[str, str],
) -> None:
    """Walk-forward model, strategy, metrics, tables and figures of one scenario."""
    from saeflow.backtest.plots import (
        plot_drawdown,
        plot_equity,
        plot_placebo,
        plot_rolling_sharpe,
    )
    from saeflow.backtest.run import build_panel, run_backtest

    df = pd.read_parquet(features)
    columns = [c for c in df.columns if c.startswith(("L", "sent_"))]
    wide = price_matrix(pd.read_parquet(prices))
    closes = wide[list(cfg.prices.tickers)]
    bench = wide[cfg.prices.benchmark] if cfg.prices.benchmark else None
    note = str(df["note"].iloc[0])
    with threadpool_limits(threads):  # OpenMP oversubscription is ruinous here
        panel = build_panel(df, columns, closes, cfg.prices.close_time, cfg.model)
        result = run_backtest(panel, closes, bench, cfg, seed)
    metrics = {
        "data": note,
        "timing": "position at the close after the headline, held to the next close",
        **result.metrics,
        "config": cfg.to_dict(),
        "seed": seed,
    }
    write_json(metrics, outs["metrics"])
    # Every table says what data it was built on ("synthetic, planted signal p=…").
    write_csv(result.equity.reset_index().assign(data=note), outs["equity"])
    write_csv(result.trades.assign(data=note), outs["trades"])
    write_csv(result.predictions.assign(data=note), outs["predictions"])
    write_csv(
        _with_labels(result.importance, labels).assign(data=note), outs["importance"]
    )
    sharpe = metrics["strategy"]["sharpe"]
    title = f"{cfg.model.primary}, {cfg.strategy.mode}, {note}"
    plot_equity(result.equity, f"Equity: {title}", outs["equity_png"])
    plot_drawdown(result.equity, f"Drawdown: {title}", outs["drawdown_png"])
    plot_rolling_sharpe(
        result.equity,
        cfg.metrics.rolling_window,
        f"Rolling Sharpe: {title}",
        outs["rolling_png"],
    )
    plot_placebo(
        result.placebo_sharpes, sharpe, f"Placebo: {note}", outs["placebo_png"]
    )


def _with_labels(importance: pd.DataFrame, labels: str | None) -> pd.DataFrame:
    """Add layer, feature id and (when a labels table exists) its label."""
    from saeflow.backtest.headline_features import parse_feature_column

    ids = [parse_feature_column(c) for c in importance["feature"]]
    out = importance.rename(columns={"feature": "column"}).assign(
        layer=pd.array([i.layer if i else None for i in ids], dtype="Int64"),
        feature=pd.array([i.feature if i else None for i in ids], dtype="Int64"),
    )
    if labels and Path(labels).exists():
        table = pd.read_csv(labels)
        table = table[table["model"] == "finetuned"][["layer", "feature", "label"]]
        table = table.astype({"layer": "Int64", "feature": "Int64"})
        out = out.merge(table, on=["layer", "feature"], how="left")
    return out
