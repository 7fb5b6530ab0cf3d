"""From per-headline features to a walk-forward strategy and its honest metrics.

`build_panel` turns headlines into one row per (decision day, ticker) under the
timing rule of `saeflow.backtest.timing` (and refuses features that break it);
`run_backtest` fits each configured classifier walk-forward, trades the primary
one's predictions, and measures it against buy-and-hold, the deflated Sharpe
ratio, a bootstrap interval and a placebo distribution of shuffled pairings.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from saeflow.backtest.config import BacktestConfig, ModelConfig
from saeflow.backtest.metrics import (
    annual_sharpe,
    deflated_sharpe,
    performance,
    placebo_p_value,
    sharpe_interval,
)
from saeflow.backtest.strategy import (
    buy_and_hold,
    strategy_returns,
    target_weights,
    trades,
)
from saeflow.backtest.timing import (
    TimingError,
    check_timing,
    decision_days,
    leakage_scan,
    next_day_returns,
)
from saeflow.backtest.walkforward import (
    Fold,
    fold_importance,
    make_classifier,
    walk_forward_folds,
    walk_forward_predict,
)

log = logging.getLogger(__name__)
KEYS = ["decision_day", "ticker"]


class Panel(NamedTuple):
    """Model-ready samples: one per (decision day, ticker) with headlines."""

    rows: pd.DataFrame
    """decision_day, ticker, n_headlines, day_index, next_return, up."""
    X: np.ndarray
    """[n, n_features] mean feature values of that day's headlines."""
    columns: list[str]
    """Feature names (``L{layer}_f{id}``, ``sent_*``, ``price_lag*``)."""
    leakage: dict[str, float]
    """Features flagged by the leakage scan (empty when clean)."""


def build_panel(
    headlines: pd.DataFrame,
    feature_columns: list[str],
    closes: pd.DataFrame,
    close_time: str,
    model_cfg: ModelConfig,
    extra: dict[str, pd.DataFrame] | None = None,
) -> Panel:
    """Samples from per-headline features (rows: timestamp, ticker, features).

    extra: name → long frame (decision_day, ticker, value, available_at), e.g.
    from `saeflow.backtest.timing.price_feature`. Every feature's timing is checked.
    """
    df = headlines[headlines["ticker"].isin(closes.columns)].copy()
    df["decision_day"] = decision_days(df["timestamp"], closes.index, close_time)
    n_drop = int(df["decision_day"].isna().sum())
    df = df.dropna(subset=["decision_day"])
    log.info("%d headlines kept, %d outside the price calendar", len(df), n_drop)
    # Headline features are known when the headline is published.
    check_timing(df["timestamp"], df["decision_day"], close_time, "headline text")
    rows = (
        df.groupby(KEYS)[feature_columns]
        .mean()
        .join(df.groupby(KEYS).size().rename("n_headlines"))
        .reset_index()
    )
    columns = list(feature_columns)
    for name, frame in (extra or {}).items():
        check_timing(frame["available_at"], frame["decision_day"], close_time, name)
        rows = rows.merge(
            frame[KEYS + ["value"]].rename(columns={"value": name}), on=KEYS, how="left"
        )
        columns.append(name)
    fwd = next_day_returns(closes)
    rows["day_index"] = closes.index.get_indexer(rows["decision_day"])
    rows["next_return"] = fwd.to_numpy()[
        rows["day_index"], fwd.columns.get_indexer(rows["ticker"])
    ]
    rows = rows.dropna(subset=["next_return", *columns]).reset_index(drop=True)
    rows["up"] = rows["next_return"] > 0
    leaks = leakage_scan(rows[columns], rows["next_return"], model_cfg.max_abs_corr)
    if leaks and model_cfg.on_leak == "refuse":
        raise TimingError(
            f"features {leaks} predict their own next-day return too well "
            f"(|Spearman ρ| > {model_cfg.max_abs_corr}): they almost surely contain "
            "it; fix their timing or set backtest.model.on_leak: flag"
        )
    X = rows[columns].to_numpy(dtype=float)
    return Panel(rows.drop(columns=columns), X, columns, leaks)


class BacktestResult(NamedTuple):
    """Everything `make_backtest` writes."""

    metrics: dict[str, Any]
    equity: pd.DataFrame
    trades: pd.DataFrame
    predictions: pd.DataFrame
    importance: pd.DataFrame
    placebo_sharpes: np.ndarray


def _trade(
    panel: Panel,
    proba: np.ndarray,
    closes: pd.DataFrame,
    days: pd.DatetimeIndex,
    cfg: BacktestConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    tested = ~np.isnan(proba)
    signals = panel.rows.loc[tested, KEYS].assign(proba_up=proba[tested])
    weights = target_weights(signals, days, list(closes.columns), cfg.strategy.mode)
    returns = strategy_returns(weights, next_day_returns(closes), cfg.strategy.cost_bps)
    return weights, returns


def run_backtest(
    panel: Panel,
    closes: pd.DataFrame,
    benchmark: pd.Series | None,
    cfg: BacktestConfig,
    seed: int,
) -> BacktestResult:
    """Walk-forward fit, trade, measure; `closes` are the traded tickers only.

    benchmark: daily closes of the benchmark on the same calendar (or None).
    """
    mcfg = cfg.model
    folds = walk_forward_folds(
        panel.rows["day_index"].to_numpy(),
        mcfg.n_folds,
        mcfg.min_train_fraction,
        mcfg.embargo_days,
    )
    first = panel.rows["day_index"].to_numpy()[folds[0].test].min()
    last = panel.rows["day_index"].to_numpy()[folds[-1].test].max()
    days = closes.index[first : last + 1]
    up = panel.rows["up"].to_numpy()
    runs, summary = {}, {}
    for name in mcfg.classifiers:
        wf = walk_forward_predict(
            panel.X, up, folds, lambda n=name: make_classifier(n, seed)
        )
        weights, returns = _trade(panel, wf.proba_up, closes, days, cfg)
        runs[name] = (wf, weights, returns)
        tested = ~np.isnan(wf.proba_up)
        summary[name] = {
            "sharpe": annual_sharpe(returns["net"].to_numpy()),
            "hit_rate": float(((wf.proba_up[tested] > 0.5) == up[tested]).mean()),
        }
    wf, weights, returns = runs[mcfg.primary]
    placebo = _placebo(panel, up, folds, closes, days, cfg, seed)
    net = returns["net"]
    trial_sr = [s["sharpe"] / np.sqrt(252) for s in summary.values()]
    null_var = float(np.var(placebo / np.sqrt(252), ddof=1)) if len(placebo) > 1 else 0
    metrics = {
        "primary": mcfg.primary,
        "strategy": performance(net, returns["turnover"], returns["gross_exposure"]),
        "sharpe_interval": dict(
            zip(
                ("low", "high"),
                sharpe_interval(
                    net,
                    cfg.metrics.bootstrap_reps,
                    cfg.metrics.block_length,
                    cfg.metrics.ci_level,
                    seed,
                ),
                strict=True,
            ),
            level=cfg.metrics.ci_level,
            method="stationary bootstrap",
            block_length=cfg.metrics.block_length,
            reps=cfg.metrics.bootstrap_reps,
        ),
        "deflated_sharpe": deflated_sharpe(
            net, trial_sr, len(trial_sr) + cfg.metrics.prior_trials, null_var
        ),
        "placebo": _placebo_summary(placebo, summary[mcfg.primary]["sharpe"]),
        "classifiers": summary,
        "folds": [_fold_info(f, panel, closes) for f in folds],
        "leakage_flags": panel.leakage,
    }
    equity = _equity(runs, mcfg.primary, closes, benchmark, days)
    held = pd.Series(1.0, index=equity.index)  # always fully invested, no trading
    metrics["buy_and_hold"] = {
        col.removeprefix("ret_bh_"): performance(equity[col], held * 0, held)
        for col in equity.columns
        if col.startswith("ret_bh_")
    }
    importance = fold_importance(
        wf, panel.X, up, folds, panel.columns, mcfg.importance_repeats, seed
    )
    predictions = panel.rows.assign(
        **{f"proba_{n}": r[0].proba_up for n, r in runs.items()}
    )
    return BacktestResult(
        metrics, equity, trades(weights), predictions, importance, placebo
    )


def _placebo(panel, up, folds, closes, days, cfg, seed) -> np.ndarray:
    """Sharpes of the primary strategy with headline–return pairings shuffled."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(cfg.metrics.placebo_permutations):
        shuffled = panel._replace(X=panel.X[rng.permutation(len(panel.X))])
        wf = walk_forward_predict(
            shuffled.X, up, folds, lambda: make_classifier(cfg.model.primary, seed)
        )
        _, returns = _trade(shuffled, wf.proba_up, closes, days, cfg)
        out.append(annual_sharpe(returns["net"].to_numpy()))
    return np.asarray(out)


def _placebo_summary(placebo: np.ndarray, sharpe: float) -> dict[str, Any]:
    if len(placebo) == 0:
        return {"n_permutations": 0}
    q = np.quantile(placebo, [0.025, 0.5, 0.975])
    return {
        "n_permutations": len(placebo),
        "what": "headline features shuffled across (day, ticker) samples, refit",
        "sharpe_quantiles": {"2.5%": q[0], "50%": q[1], "97.5%": q[2]},
        "p_value": placebo_p_value(sharpe, placebo),
    }


def _fold_info(fold: Fold, panel: Panel, closes: pd.DataFrame) -> dict[str, Any]:
    day = panel.rows["decision_day"]
    return {
        "train_last_decision_day": str(day.iloc[fold.train].max().date()),
        "test_first_decision_day": str(day.iloc[fold.test].min().date()),
        "test_last_decision_day": str(day.iloc[fold.test].max().date()),
        "n_train": len(fold.train),
        "n_test": len(fold.test),
    }


def _equity(runs, primary, closes, benchmark, days) -> pd.DataFrame:
    returns = runs[primary][2]
    eq = returns.rename(columns={"net": "ret_net", "gross": "ret_gross"})
    for name, (_, _, r) in runs.items():
        eq[f"ret_net_{name}"] = r["net"].to_numpy()
    eq["ret_bh_universe"] = buy_and_hold(
        next_day_returns(closes), days, list(closes.columns)
    ).to_numpy()
    if benchmark is not None:
        bench = next_day_returns(benchmark.to_frame("b"))
        eq["ret_bh_benchmark"] = buy_and_hold(bench, days, ["b"]).to_numpy()
    for col in [c for c in eq.columns if c.startswith("ret_")]:
        eq[col.replace("ret_", "equity_", 1)] = (1 + eq[col]).cumprod()
    eq["drawdown"] = eq["equity_net"] / eq["equity_net"].cummax() - 1
    return eq
