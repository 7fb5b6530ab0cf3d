"""Rule build_viewer_data: the viewer's manifest (models, layers, parts built)."""

from saeflow.viewer import make_viewer_manifest
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_viewer_manifest(
        sm.params.models,
        sm.params.layers,
        sm.params.parts,
        sm.input.corpus,
        sm.input.headlines,
        sm.input.get("metrics"),
        sm.params.hist_bins,
        sm.output.manifest,
        sm.input.get("saes"),
        sm.input.get("comparison"),
    )
