"""Activation caches (rules/activations.smk): one forward pass per model × corpus,
hidden states of every configured layer written to HDF5.

Inputs: results/corpus/{corpus}.parquet; the model (results/models/finetuned/
or models.<model>.ref).
Outputs: results/activations/{model}/layer_{L}/{corpus}.h5 and
results/activations/{model}/{corpus}_report.json.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_activations": "saeflow.activations.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
