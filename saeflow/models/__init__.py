"""Models (rules/models.smk): resolve model references, load models and tokenizers,
and fine-tune the base model into a domain sentiment classifier (finetune.py) or,
from unlabelled text, a domain-adapted language model (domain_lm.py).

Inputs: results/corpus/domain.parquet; models.base.ref (hub id, folder or
package:<module>).
Outputs: results/models/finetuned/ (transformers checkpoint) and
results/models/finetuned_metrics.json.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_finetuned": "saeflow.models.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
