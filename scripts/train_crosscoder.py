"""Rule train_crosscoder: both models' activations of one layer → one crosscoder."""

from saeflow.crosscoder import make_crosscoder
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_crosscoder(
        list(sm.input.base_acts),
        list(sm.input.finetuned_acts),
        sm.params.cfg,
        sm.params.seed,
        sm.params.init_seed,
        sm.params.device,
        sm.output.crosscoder,
        sm.output.metrics,
        sm.output.curve,
        sm.output.figure,
        title=f"crosscoder layer {sm.wildcards.layer} seed {sm.wildcards.cc_seed}",
    )
