"""Rule compute_feature_stats: SAE + one corpus' activations → per-feature stats."""

from saeflow.stages import make_feature_stats, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
make_feature_stats(
    sm.input.sae, sm.input.acts, sm.params.batch_size, sm.params.device, sm.output.stats
)
