"""Rule analyse_crosscoder: one layer's crosscoders → classes, Latent Scaling,
stability and agreement with the SAE matching."""

from saeflow.crosscoder import make_crosscoder_analysis
from saeflow.workflow import job
from saeflow.workflow.config import CompareConfig, CrosscoderConfig

with job(snakemake) as sm:  # noqa: F821
    make_crosscoder_analysis(
        list(sm.input.crosscoders),
        list(sm.input.metrics),
        list(sm.input.base_acts),
        list(sm.input.finetuned_acts),
        {"base": sm.input.sae_base, "finetuned": sm.input.sae_finetuned},
        {"base": sm.input.metrics_base, "finetuned": sm.input.metrics_finetuned},
        sm.input.matches,
        sm.input.lost,
        CrosscoderConfig.from_dict(sm.params.cfg, "crosscoder: "),
        CompareConfig.from_dict(sm.params.compare, "compare: "),
        sm.params.holdout_fraction,
        sm.params.seed,
        sm.params.device,
        int(sm.wildcards.layer),
        dict(sm.output.items()),
    )
