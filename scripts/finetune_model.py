"""Rule finetune_model: base model + labelled domain corpus → fine-tuned model."""

from saeflow.models import make_finetuned
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_finetuned(
        sm.params.base,
        sm.input.corpus,
        sm.params.cfg,
        sm.params.seed,
        sm.output.model,
        sm.output.metrics,
    )
