"""Rules train_sae and train_sae_replicate: activations of one model × layer
(all corpora) → the SAEs.

train_sae's default SAE goes where downstream rules read it; `sae.variants` go
under `variants/<name>/`. A replicate (the seed floor) is the default SAE alone,
from its own seeds. Given more than one GPU (resources gpu=N), the job runs
data-parallel under torchrun with N ranks.
"""

from saeflow.sae import make_saes
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_saes(
        list(sm.input.acts),
        sm.params.cfg,
        sm.params.seed,
        sm.params.device,
        sm.output.sae,
        sm.output.metrics,
        sm.output.curve,
        sm.output.figure,
        getattr(sm.output, "variants", None),
        title=f"{sm.wildcards.model} layer {sm.wildcards.layer}",
        n_procs=max(1, int(sm.resources.get("gpu", 0))),
        init_seed=sm.params.init_seed,
    )
