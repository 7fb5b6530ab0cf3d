"""Rule summarize_crosscoders: per-layer crosscoder analyses → table, JSON, figure."""

from saeflow.crosscoder import make_crosscoder_summary
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_crosscoder_summary(
        dict(zip(sm.params.layers, sm.input.layers, strict=True)),
        dict(zip(sm.params.layers, sm.input.latents, strict=True)),
        dict(sm.output.items()),
    )
