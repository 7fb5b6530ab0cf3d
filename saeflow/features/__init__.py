"""Feature statistics and domain specialization (rules/features.smk): per-feature
activation statistics per corpus, domain minus general ranking per layer, and
the cross-layer reports of each model.

Inputs: results/sae/{model}/layer_{L}/sae/;
results/activations/{model}/layer_{L}/{corpus}.h5; results/corpus/domain.parquet.
Outputs: results/features/{model}/layer_{L}/{corpus}_stats.parquet,
specialization.parquet, top_{N}_features_analysis.{csv,json};
results/features/{model}/ cross-layer CSVs, JSON and specialization_by_layer.png.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_feature_stats": "saeflow.features.stages",
    "make_layer_ranking": "saeflow.features.stages",
    "make_model_summary": "saeflow.features.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
