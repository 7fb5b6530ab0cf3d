"""Rule prepare_labeler: GGUF labeler → transformers folder, converted once."""

from saeflow.labels import prepare_labeler_model
from saeflow.labels.config import LabelerConfig
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    prepare_labeler_model(
        LabelerConfig(kind="transformers", **sm.params.weights),
        sm.params.cache,
        sm.output[0],
    )
