"""Rule label_features: label the chosen features with an LLM and score them."""

from saeflow.labels import make_labels
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    keys = [tuple(k) for k in sm.params.label_keys]
    make_labels(
        spec=dict(zip(keys, sm.input.spec, strict=True)),
        examples=dict(zip(keys, sm.input.examples, strict=True)),
        matches=dict(zip(sm.params.layers, sm.input.matches, strict=False)),
        templates=sm.params.templates,
        cfg=sm.params.cfg,
        cache_dir=sm.params.cache,
        clean_out=sm.output.clean,
        detailed_out=sm.output.detailed,
        summary_out=sm.output.summary,
        prepared_model=sm.input.labeler or None,
        corpus=sm.input.corpus,
        figure_out=sm.output.figure,
        token_caches=list(sm.input.tokens),
        patterns_out=sm.output.patterns,
        texts=list(sm.input.texts),
    )
