"""Rule build_viewer_headlines: predictions and top features of every headline."""

from saeflow.viewer import make_viewer_headlines
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    layers = sm.params.layers
    make_viewer_headlines(
        sm.input.corpus,
        dict(zip(layers, sm.input.acts, strict=True)),
        dict(zip(layers, sm.input.saes, strict=True)),
        sm.params.ref,
        sm.params.finetune,
        sm.params.seed,
        sm.params.top_n,
        sm.params.batch_size,
        sm.params.device,
        sm.output.table,
        dict(zip(layers, sm.output.features, strict=True)),
    )
