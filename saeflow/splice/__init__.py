"""Spliced-in evaluation (rules/splice.smk): the model run with one layer replaced by
its SAE's reconstruction, against clean, zero and mean ablation.

Inputs: results/sae/{model}/layer_{L}/sae/;
results/activations/{model}/layer_{L}/domain.h5 (its held-out tail picks the
texts); results/corpus/domain.parquet; the model.
Outputs: results/sae/{model}/layer_{L}/spliced.json;
results/compare/layer_{L}/spliced_base_into_finetuned.json.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_spliced": "saeflow.splice.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
