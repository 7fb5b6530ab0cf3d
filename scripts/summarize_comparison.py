"""Rule summarize_comparison: per-layer comparisons → cross-layer tables and JSON."""

from saeflow.compare import make_comparison_summary
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    layers = sm.params.layers
    make_comparison_summary(
        dict(zip(layers, sm.input.layers, strict=True)),
        dict(zip(layers, sm.input.transfers, strict=True)),
        dict(zip(layers, sm.input.tops, strict=True)),
        sm.input.corpus,
        sm.params.top_n,
        sm.params.preset,
        dict(sm.output.items()),
        dict(zip(layers, sm.input.spliced, strict=True)) if sm.input.spliced else None,
    )
