"""Rule compute_feature_stats: SAE + one corpus' activations → per-feature stats."""

from saeflow.features import make_feature_stats
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_feature_stats(
        sm.input.sae,
        sm.input.acts,
        sm.params.batch_size,
        sm.params.device,
        sm.output.stats,
    )
