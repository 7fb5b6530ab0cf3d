"""saeflow: which features did fine-tuning create, where, and are they useful?

Sparse autoencoders trained on a base and a fine-tuned language model, compared
layer by layer, as one reproducible Snakemake workflow. This package holds the
logic; the workflow's rules and scripts only call into it.

Layout: one subpackage per rule file (rules/<stage>.smk -> saeflow/<stage>/), from
the bottom of the stack up: workflow (configs, job wrapper, provenance; imports no
other subpackage), corpus, models, activations, sae, features, splice, compare,
examples, labels, backtest, viewer. Each subpackage's docstring names its input
and output files, and it exports the entry points its scripts call. Exports load
on first use, and entry points import torch and other heavy libraries inside the
function, so Snakemake parsing the workflow (which imports config modules) and
light jobs never pay for them. `saeflow.cli` is the `saeflow` command.
"""

__version__ = "0.1.0"
