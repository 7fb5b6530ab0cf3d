"""Examples per SAE feature (rules/examples.smk): top-activating contexts,
activation-quantile samples and non-activating negatives.

Inputs: results/sae/{model}/layer_{L}/sae/;
results/activations/{model}/layer_{L}/{corpus}.h5; the model's tokenizer.
Outputs: results/examples/{model}/layer_{L}/examples.parquet (EXAMPLE_COLUMNS).
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_examples": "saeflow.examples.collect",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
