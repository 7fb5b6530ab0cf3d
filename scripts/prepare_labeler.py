"""Rule prepare_labeler: GGUF labeler → transformers folder, converted once."""

from saeflow.job import job
from saeflow.labelers import prepare_labeler_model
from saeflow.labeling_config import LabelerConfig

with job(snakemake) as sm:  # noqa: F821
    prepare_labeler_model(
        LabelerConfig(kind="transformers", **sm.params.weights),
        sm.params.cache,
        sm.output[0],
    )
