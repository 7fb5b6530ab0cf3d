"""Rule build_corpus: one corpus → Parquet."""

from saeflow.job import job
from saeflow.stages import make_corpus

with job(snakemake) as sm:  # noqa: F821
    make_corpus(sm.params.cfg, sm.params.seed, sm.output.corpus)
