"""Rule finetune_model: base model + labelled domain corpus → fine-tuned model."""

from saeflow.stages import make_finetuned, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
make_finetuned(
    sm.params.base,
    sm.input.corpus,
    sm.params.cfg,
    sm.params.seed,
    sm.output.model,
    sm.output.metrics,
)
