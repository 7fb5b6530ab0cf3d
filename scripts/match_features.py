"""Rule match_features: one layer's base and fine-tuned SAEs → matched features."""

from saeflow.compare import make_layer_comparison
from saeflow.workflow import job
from saeflow.workflow.config import CompareConfig

with job(snakemake) as sm:  # noqa: F821
    corpora = sm.params.corpora
    make_layer_comparison(
        sm.input.sae_base,
        sm.input.sae_finetuned,
        dict(zip(corpora, sm.input.base_acts, strict=True)),
        dict(zip(corpora, sm.input.finetuned_acts, strict=True)),
        CompareConfig.from_dict(sm.params.cfg, "compare: "),
        sm.params.seed,
        sm.params.sae_seed,
        sm.params.device,
        int(sm.wildcards.layer),
        dict(sm.output.items()),
    )
