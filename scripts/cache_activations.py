"""Rule cache_activations: one model × one corpus → one HDF5 file per layer."""

from saeflow.activations import make_activations
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_activations(
        sm.params.ref,
        sm.input.corpus,
        sm.params.cfg,
        dict(zip(sm.params.layers, sm.output.acts, strict=True)),
        sm.output.report,
        sm.params.device,
        sm.params.model_dtype,
    )
