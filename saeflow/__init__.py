"""saeflow: which features did fine-tuning create, where, and are they useful?

Sparse autoencoders trained on a base and a fine-tuned language model, compared
layer by layer, as one reproducible Snakemake workflow. This package holds the
logic; the workflow's rules and scripts only call into it.
"""

__version__ = "0.1.0"
