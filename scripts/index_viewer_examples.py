"""Rule index_viewer_examples: one SAE's examples sorted by feature for lookups."""

from saeflow.viewer import make_viewer_examples
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_viewer_examples(sm.input.examples, sm.params.row_group, sm.output.examples)
