"""Rule rank_specialized_features: domain vs general stats → ranked features."""

from saeflow.features import make_layer_ranking
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_layer_ranking(
        sm.input.domain,
        sm.input.general,
        sm.params.cfg,
        sm.output.table,
        sm.output.csv,
        sm.output.json,
    )
