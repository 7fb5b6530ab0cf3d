"""Rule collect_feature_examples: SAE + both corpora's activations → examples."""

from saeflow.examples import make_examples
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_examples(
        sm.input.sae,
        dict(zip(sm.params.corpora, sm.input.acts, strict=True)),
        sm.params.ref,
        sm.params.cfg,
        sm.params.seed,
        sm.params.device,
        sm.output.examples,
    )
