"""Rule cache_activations: one model × one corpus → one HDF5 file per layer."""

from saeflow.stages import make_activations, setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0], sm.threads)
make_activations(
    sm.params.ref,
    sm.input.corpus,
    sm.params.cfg,
    dict(zip(sm.params.layers, sm.output.acts, strict=True)),
    sm.output.report,
    sm.params.device,
    sm.params.model_dtype,
)
