"""Rule index_viewer_examples: one SAE's examples sorted by feature for lookups."""

from saeflow.job import job
from saeflow.viewer_data import make_viewer_examples

with job(snakemake) as sm:  # noqa: F821
    make_viewer_examples(sm.input.examples, sm.params.row_group, sm.output.examples)
