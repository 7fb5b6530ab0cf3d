"""Rule summarize_layers: per-layer rankings of one model → cross-layer reports."""

from saeflow.stages import make_model_summary, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
make_model_summary(
    dict(zip(sm.params.layers, sm.input.layers, strict=True)),
    sm.input.corpus,
    sm.params.cfg,
    sm.wildcards.model,
    dict(sm.output.items()),
)
