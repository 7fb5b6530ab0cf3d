"""Rule crosscoder_as_sae: a layer's crosscoder as the SAE and caches of the
"crosscoder" model, for the feature, examples, labels and viewer stages."""

from saeflow.crosscoder import make_crosscoder_as_sae
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    corpora = sm.params.corpora
    make_crosscoder_as_sae(
        sm.input.crosscoder,
        sm.input.metrics,
        dict(zip(corpora, sm.input.base_acts, strict=True)),
        dict(zip(corpora, sm.input.finetuned_acts, strict=True)),
        sm.output.sae,
        dict(zip(corpora, sm.output.acts, strict=True)),
    )
