"""Rule match_features: one layer's base and fine-tuned SAEs (every replicate)
→ matched features, the seed floor and Latent Scaling."""

from saeflow.compare import make_layer_comparison
from saeflow.workflow import job
from saeflow.workflow.config import CompareConfig

with job(snakemake) as sm:  # noqa: F821
    corpora = sm.params.corpora
    make_layer_comparison(
        [sm.input.sae_base, *sm.input.replicates_base],
        [sm.input.sae_finetuned, *sm.input.replicates_finetuned],
        dict(zip(corpora, sm.input.base_acts, strict=True)),
        dict(zip(corpora, sm.input.finetuned_acts, strict=True)),
        CompareConfig.from_dict(sm.params.cfg, "compare: "),
        sm.params.seed,
        tuple(sm.params.init_seeds),
        sm.params.device,
        int(sm.wildcards.layer),
        dict(sm.output.items()),
    )
