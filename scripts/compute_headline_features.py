"""Rule compute_headline_features: SAE features and sentiment of each headline."""

from saeflow.backtest import make_headline_features
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821 - injected by Snakemake
    layers = list(sm.params.layers)
    make_headline_features(
        sm.input.news,
        sm.params.model_ref,
        dict(zip(layers, sm.input.saes, strict=True)),
        dict(zip(layers, sm.input.specialization, strict=True)),
        sm.params.cfg,
        sm.params.exclude_special,
        sm.params.device,
        sm.output.features,
    )
