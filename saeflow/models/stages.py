"""Entry point of the finetune_model rule: fine-tune the base model on the domain
corpus' labels, or on its text alone (finetune.objective).

As in every stage's entry points, heavy libraries are imported inside the function
(see saeflow/__init__.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saeflow.workflow.config import FinetuneConfig
from saeflow.workflow.io import write_json


def make_finetuned(
    base_ref: str,
    corpus: str | Path,
    cfg: FinetuneConfig,
    seed: int,
    out_dir: str | Path,
    metrics: str | Path,
) -> None:
    """Fine-tune the base model on the domain corpus: its labels
    (`classification`) or its text alone (`mlm`)."""
    df = pd.read_parquet(corpus)
    if cfg.objective == "mlm":
        from saeflow.models.domain_lm import finetune_lm

        result = finetune_lm(base_ref, df, cfg, seed, out_dir)
    else:
        from saeflow.models.finetune import finetune

        result = finetune(base_ref, df, cfg, seed, out_dir)
    write_json(
        {
            **result._asdict(),
            "base_model": base_ref,
            "config": cfg.to_dict(),
            "synthetic_fraction": float(df["synthetic"].mean()),
        },
        metrics,
    )
