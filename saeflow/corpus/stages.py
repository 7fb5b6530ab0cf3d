"""Entry point of the build_corpus rule: build one corpus and write it as Parquet.

As in every stage's entry points, heavy libraries are imported inside the function
(see saeflow/__init__.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from saeflow.workflow.config import CorpusConfig

log = logging.getLogger("saeflow")


def make_corpus(cfg: CorpusConfig, seed: int, out: str | Path) -> None:
    """Build one corpus and write it as Parquet; counts go to the log."""
    from saeflow.corpus.build import build_corpus, write_corpus

    df, report = build_corpus(cfg, seed)
    log.info("corpus %s: %s", out, report._asdict())
    write_corpus(df, out)
