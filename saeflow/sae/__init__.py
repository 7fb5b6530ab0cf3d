"""Sparse autoencoders (rules/sae.smk): the model, its trainer and optimizer,
checkpoints, data parallelism, the activation reader, export to and import from
SAELens/sparsify layouts, and the table of all SAEs.

Inputs: results/activations/{model}/layer_{L}/*.h5; for import_sae a folder named
in `imported_saes`; for the summary each SAE's spliced.json.
Outputs: results/sae/{model}/layer_{L}/{sae/, metrics.json, training_curve.csv,
training_curve.png, variants/}; results/sae/sae_summary.{csv,json,png}.
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_imported_sae": "saeflow.sae.imported",
    "make_sae_summary": "saeflow.sae.summary",
    "make_saes": "saeflow.sae.train_job",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
