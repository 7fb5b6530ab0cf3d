"""Parse-time checks of the backtest's own input files (`backtest.news.path`,
`backtest.prices.path`): they exist, can be read, and their headers hold the
configured columns, so a wrong file stops the run before the SAEs are trained
rather than at build_backtest_news."""

from __future__ import annotations

from pathlib import Path

from saeflow.backtest.config import BacktestConfig
from saeflow.corpus.preflight import check_table
from saeflow.workflow.config import ConfigError, FinetuneConfig


def check_backtest_files(cfg: BacktestConfig) -> None:
    """Check the news and price files a backtest config names, if any."""
    news = cfg.news
    if news.source == "local" and news.path:
        columns = {
            "timestamp_column": news.timestamp_column,
            "ticker_column": news.ticker_column,
            "text_column": news.text_column,
        }
        check_table(Path(news.path), "backtest.news", columns)
    elif news.source == "djia" and news.path:
        header = check_table(Path(news.path), "backtest.news", {})
        if header and (
            "Date" not in header or not any(c.startswith("Top") for c in header)
        ):
            raise ConfigError(
                f"invalid config at key 'backtest.news.path': {news.path} is not in "
                f"the Combined_News_DJIA layout (Date, Label, Top1..Top25); its "
                f"columns are {header}"
            )
    prices = cfg.prices
    if prices.source == "local" and prices.path:
        columns = {
            "date_column": prices.date_column,
            "ticker_column": prices.ticker_column,
            "price_column": prices.price_column,
        }
        check_table(Path(prices.path), "backtest.prices", columns)


def check_backtest_sentiment(
    cfg: BacktestConfig, finetune: FinetuneConfig, finetuned_ref: str | None
) -> None:
    """Sentiment features need a classifier: the mlm objective makes none."""
    if finetuned_ref is None and finetune.objective == "mlm" and cfg.features.sentiment:
        raise ConfigError(
            "invalid config at key 'backtest.features.sentiment': the fine-tuned "
            "model made with finetune.objective: mlm is a language model, not a "
            "sentiment classifier; set backtest.features.sentiment: false (SAE "
            "features only) or backtest.activate: false"
        )
