"""Backtest (rules/backtest.smk): prices and dated headlines, per-headline SAE
features, a walk-forward strategy under one timing rule, and its metrics against
luck (deflated Sharpe, bootstrap interval, placebo).

Inputs: prices and news (offline sources or files named in config.yaml);
results/models/finetuned/; results/sae/finetuned/layer_{L}/sae/;
results/features/finetuned/layer_{L}/specialization.parquet; labels if run.
Outputs: results/backtest/prices.parquet; results/backtest/{scenario}/{news,
features}.parquet, metrics.json, equity/trades/predictions/importance.csv and
figures.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_backtest": "saeflow.backtest.stages",
    "make_backtest_news": "saeflow.backtest.stages",
    "make_backtest_prices": "saeflow.backtest.stages",
    "make_headline_features": "saeflow.backtest.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
