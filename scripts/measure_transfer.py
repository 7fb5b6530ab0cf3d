"""Rule measure_transfer: held-out FVU of each SAE of a layer on both models."""

from saeflow.compare import make_transfer
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_transfer(
        sm.input.sae_base,
        sm.input.sae_finetuned,
        list(sm.input.base_acts),
        list(sm.input.finetuned_acts),
        sm.params.holdout_fraction,
        sm.params.batch_size,
        sm.params.device,
        int(sm.wildcards.layer),
        sm.output.transfer,
    )
