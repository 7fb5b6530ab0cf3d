"""Rule build_corpus: one corpus → Parquet."""

from saeflow.stages import make_corpus, setup_logging

setup_logging(snakemake.log[0], snakemake.threads)  # noqa: F821
make_corpus(snakemake.params.cfg, snakemake.params.seed, snakemake.output.corpus)  # noqa: F821
