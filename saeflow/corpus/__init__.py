"""Text corpora (rules/corpus.smk): generated financial headlines, the general text
gensim ships, a Hugging Face dataset or a local table, cleaned to one schema.

Inputs: the `corpora.<name>` block of config.yaml (a local table file for
source `local`).
Outputs: results/corpus/{corpus}.parquet (CORPUS_COLUMNS, one row per document).
"""

from saeflow.workflow.exports import lazy_exports

# Name a script calls -> module defining it, imported on first use.
_EXPORTS = {
    "make_corpus": "saeflow.corpus.stages",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
