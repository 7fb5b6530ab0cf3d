"""Rule train_sae: activations of one model × layer (all corpora) → top-k SAE."""

from saeflow.stages import make_sae, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
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
