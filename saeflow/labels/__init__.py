"""Feature labels (rules/labels.smk): an LLM names features from their examples,
and each label is scored on held-out snippets (detection, fuzzing, embedding)
against random and shuffled labels.

Inputs: results/examples/{model}/layer_{L}/examples.parquet;
results/features/{model}/layer_{L}/specialization.parquet;
results/compare/layer_{L}/matches.parquet (if compare ran);
results/corpus/{corpus}.parquet (texts whose sentences the prompt shows, event
families as ground truth); prompts/*.txt.
Outputs: results/labels/labeler_model/ (GGUF converted once);
results/labels/feature_labels_{clean,detailed}_domain.csv,
labels_summary_domain.json, label_scores.png; answers cached in results/labels/cache/.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_labels": "saeflow.labels.labeling",
    "prepare_labeler_model": "saeflow.labels.labelers",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
