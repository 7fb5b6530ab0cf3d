"""Rule build_corpus: one corpus → Parquet."""

from saeflow.corpus import make_corpus
from saeflow.workflow import job

with job(snakemake) as sm:  # noqa: F821
    make_corpus(sm.params.cfg, sm.params.seed, sm.output.corpus)
