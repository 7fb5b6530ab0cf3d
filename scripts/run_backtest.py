"""Rule run_backtest: walk-forward model, strategy, metrics and figures."""

from saeflow.backtest import make_backtest
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821 - injected by Snakemake
    make_backtest(
        sm.input.features,
        sm.input.prices,
        sm.input.labels[0] if sm.input.labels else None,
        sm.params.cfg,
        sm.params.seed,
        sm.threads,
        dict(sm.output.items()),
    )
