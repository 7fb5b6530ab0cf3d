# saeflow: raw text -> activations (HDF5) -> top-k SAEs -> feature statistics
# and domain specialization, for a base and a fine-tuned model.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces config.yaml instead of being merged
# into it, so alternative configs (configs/, tests/configs/) stand complete.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


# Every rule asks for one thread. On the default 2-core machine two one-thread
# jobs keep both cores busy, where a two-thread job leaves one idle until the
# other job ends (measured: 16.7 min with the heavy rules at 2 threads). Bigger
# machines raise the heavy rules' threads: profiles/workstation, profiles/slurm.


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/models.smk"
include: "rules/activations.smk"
include: "rules/sae.smk"
include: "rules/features.smk"
include: "rules/compare.smk"
include: "rules/crosscoder.smk"
include: "rules/splice.smk"
include: "rules/examples.smk"
include: "rules/labels.smk"
include: "rules/viewer.smk"
include: "rules/backtest.smk"


rule all:
    default_target: True
    input:
        all_targets(),
