"""BatchTopK crosscoders (rules/crosscoder.smk): one dictionary per layer over
both models' activations of the same tokens, a decoder half per model; latents
classed base-only / shared / fine-tuned-only, exclusive ones checked by Latent
Scaling and a second seed, and set beside the SAE matching.

Inputs: results/activations/{base,finetuned}/layer_{L}/{corpus}.h5;
results/sae/{base,finetuned}/layer_{L}/{sae, metrics.json};
results/compare/layer_{L}/{matches,lost}.parquet.
Outputs: results/crosscoder/layer_{L}/seed_{S}/{crosscoder/, metrics.json,
training_curve.*}; results/crosscoder/layer_{L}/{latents.parquet,
crosscoder_comparison.json}; results/crosscoder/crosscoder_summary.{csv,json},
relative_norms.png; and the layer's crosscoder as the "crosscoder" model's SAE
and (virtual) activation caches, results/sae/crosscoder/layer_{L}/sae and
results/activations/crosscoder/layer_{L}/{corpus}.h5 (saeflow.crosscoder.as_sae),
which the feature, examples, labels and viewer stages read like any model's.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_crosscoder": "saeflow.crosscoder.train_job",
    "make_crosscoder_analysis": "saeflow.crosscoder.stages",
    "make_crosscoder_as_sae": "saeflow.crosscoder.as_sae",
    "make_crosscoder_summary": "saeflow.crosscoder.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
