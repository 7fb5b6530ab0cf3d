"""Base vs fine-tuned SAE features (rules/compare.smk): one-to-one matching by
decoder cosine and activation correlation with null thresholds, transfer FVU,
and the comparison across layers.

Inputs: results/sae/{base,finetuned}/layer_{L}/sae/;
results/activations/{base,finetuned}/layer_{L}/{corpus}.h5.
Outputs: results/compare/layer_{L}/{matches.parquet, lost.parquet,
layer_comparison.json, transfer.json, top_{N}_compared_features.csv};
results/compare/ overlap_by_layer.csv, comparison_summary.json and figures.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_comparison_figures": "saeflow.compare.stages",
    "make_comparison_summary": "saeflow.compare.stages",
    "make_layer_comparison": "saeflow.compare.stages",
    "make_transfer": "saeflow.compare.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
