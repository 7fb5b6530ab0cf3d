"""Rule build_backtest_prices: daily closes of the traded tickers and benchmark."""

from saeflow.backtest import make_backtest_prices
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821 - injected by Snakemake
    make_backtest_prices(sm.params.cfg, sm.output.prices)
