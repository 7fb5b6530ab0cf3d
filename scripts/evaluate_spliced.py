"""Rules evaluate_spliced*: one SAE spliced into a model at its layer."""

from saeflow.splice import make_spliced
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_spliced(
        sm.params.ref,
        sm.input.sae,
        int(sm.wildcards.layer),
        sm.input.cache,
        sm.input.corpus,
        sm.params.cfg,
        sm.params.finetune,
        sm.params.act,
        sm.params.holdout_fraction,
        sm.params.seed,
        sm.params.device,
        sm.params.model_dtype,
        sm.output.spliced,
    )
