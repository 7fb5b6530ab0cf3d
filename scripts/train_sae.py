"""Rule train_sae: activations of one model × layer (all corpora) → top-k SAE."""

from saeflow.job import job
from saeflow.stages import make_sae

with job(snakemake) as sm:  # noqa: F821
    make_sae(
        list(sm.input.acts),
        sm.params.cfg,
        sm.params.seed,
        sm.params.device,
        sm.output.sae,
        sm.output.metrics,
        sm.output.curve,
        sm.output.figure,
        title=f"{sm.wildcards.model} layer {sm.wildcards.layer}",
    )
