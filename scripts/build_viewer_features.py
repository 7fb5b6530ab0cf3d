"""Rule build_viewer_features: one model × layer's feature table and histograms."""

from saeflow.viewer import make_viewer_features
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_viewer_features(
        sm.wildcards.model,
        int(sm.wildcards.layer),
        sm.input.sae,
        {"domain": sm.input.domain, "general": sm.input.general},
        sm.input.spec,
        sm.input.get("other_spec"),
        sm.input.get("matches"),
        sm.input.get("labels"),
        sm.params.hist_bins,
        sm.params.batch_size,
        sm.params.device,
        sm.output.table,
        sm.output.hist,
        sm.input.get("latents"),
        # The crosscoder's page sets each model's nearest SAE feature beside it.
        dict(zip(sm.params.models, sm.input.model_specs, strict=True))
        if "model_specs" in sm.input.keys()
        else None,
        sm.input.get("patterns"),
    )
