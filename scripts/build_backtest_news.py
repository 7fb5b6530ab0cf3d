"""Rule build_backtest_news: dated headlines of one backtest scenario."""

from saeflow.backtest import make_backtest_news
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821 - injected by Snakemake
    make_backtest_news(
        sm.params.cfg,
        sm.wildcards.scenario,
        sm.input.prices,
        list(sm.params.tickers),
        sm.params.seed,
        sm.output.news,
    )
