"""The feature viewer (rules/viewer.smk, `saeflow view`) and per-feature exports
(`saeflow export-features`): compact tables built once per run, served read-only.

Inputs: results/sae/, results/activations/, results/features/ and, when those
stages ran, results/compare/, results/examples/, results/labels/;
results/corpus/domain.parquet; the fine-tuned model.
Outputs: results/viewer/{model}/layer_{L}/{features.parquet, histograms.npy,
examples.parquet}, results/viewer/headlines.parquet,
results/viewer/manifest.json; Neuronpedia-style JSON under --out.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_viewer_examples": "saeflow.viewer.data",
    "make_viewer_features": "saeflow.viewer.data",
    "make_viewer_headlines": "saeflow.viewer.headlines",
    "make_viewer_manifest": "saeflow.viewer.data",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
