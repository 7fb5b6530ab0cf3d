"""Rule summarize_saes: every SAE's held-out FVU beside its spliced-in result."""

from saeflow.sae import make_sae_summary
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    keys = sm.params.saes
    # Without the splice stage the spliced inputs are empty lists: no pairs.
    make_sae_summary(
        dict(zip(keys, sm.input.metrics, strict=True)),
        dict(zip(keys, sm.input.spliced, strict=False)),
        dict(zip(sm.params.layers, sm.input.base_in_finetuned, strict=False)),
        dict(sm.output.items()),
    )
