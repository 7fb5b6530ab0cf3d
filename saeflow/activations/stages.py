"""Entry point of the cache_activations rule: one model's activations on one corpus,
every configured layer.

As in every stage's entry points, heavy libraries are imported inside the function
(see saeflow/__init__.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from saeflow.workflow.config import ActivationConfig
from saeflow.workflow.io import sha256_file, write_json

log = logging.getLogger("saeflow")


def make_activations(
    model_ref: str,
    corpus: str | Path,
    cfg: ActivationConfig,
    out_paths: dict[int, str],
    report: str | Path,
    device: str,
    model_dtype: str,
) -> None:
    """Cache activations of one model on one corpus for every configured layer."""
    from saeflow.activations.cache import cache_activations
    from saeflow.workflow.device import pick_device

    df = pd.read_parquet(corpus, columns=["doc_id", "text"])
    result = cache_activations(
        model_ref,
        df["doc_id"].tolist(),
        df["text"].tolist(),
        cfg,
        out_paths,
        {"corpus": str(corpus), "corpus_hash": sha256_file(corpus)},
        pick_device(device),
        model_dtype,
    )
    log.info("activations: %s", result._asdict())
    write_json(
        {**result._asdict(), "model_ref": model_ref, "corpus": str(corpus)}, report
    )
