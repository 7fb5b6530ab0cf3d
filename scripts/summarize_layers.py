"""Rule summarize_layers: per-layer rankings of one model → cross-layer reports."""

from saeflow.features import make_model_summary
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_model_summary(
        dict(zip(sm.params.layers, sm.input.layers, strict=True)),
        sm.input.corpus,
        sm.params.cfg,
        sm.wildcards.model,
        dict(sm.output.items()),
    )
