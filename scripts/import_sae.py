"""Rule import_sae: an SAE trained elsewhere → this model × layer's SAE files."""

from saeflow.sae import make_imported_sae
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_imported_sae(
        sm.input.folder,
        list(sm.input.acts),
        sm.params.holdout_fraction,
        sm.params.batch_size,
        sm.params.device,
        sm.output.sae,
        sm.output.metrics,
    )
