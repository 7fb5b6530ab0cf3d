"""Rule rank_specialized_features: domain vs general stats → ranked features."""

from saeflow.stages import make_layer_ranking, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
make_layer_ranking(
    sm.input.domain,
    sm.input.general,
    sm.params.cfg,
    sm.output.table,
    sm.output.csv,
    sm.output.json,
)
