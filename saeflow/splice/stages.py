"""Entry point of the evaluate_spliced rules: an SAE spliced into a model at its
layer, against clean, zero and mean.

As in every stage's entry points, heavy libraries are imported inside the function
(see saeflow/__init__.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from saeflow.workflow.config import ActivationConfig, FinetuneConfig, SpliceConfig
from saeflow.workflow.io import write_json

log = logging.getLogger("saeflow")


def make_spliced(
    model_ref: str,
    sae_dir: str | Path,
    layer: int,
    cache: str | Path,
    corpus: str | Path,
    cfg: SpliceConfig,
    finetune: FinetuneConfig,
    act: ActivationConfig,
    holdout_fraction: float,
    seed: int,
    device: str,
    model_dtype: str,
    out: str | Path,
) -> None:
    """An SAE spliced into a model at its layer, against clean, zero and mean.

    `cache` is the SAE's own domain activation cache (its held-out tail picks
    the texts); `finetune` and `seed` rebuild the fine-tuning's held-out split.
    """
    from saeflow.models.finetune import split_labelled
    from saeflow.models.loading import load_tokenizer, load_with_head
    from saeflow.sae.model import TopKSAE
    from saeflow.splice.evaluate import (
        heldout_doc_ids,
        make_batches,
        select_texts,
        splice_eval,
    )
    from saeflow.workflow.device import pick_device

    dev = pick_device(device)
    model, kind = load_with_head(model_ref, model_dtype, dev)
    sae = TopKSAE.load(sae_dir, dev)
    docs = pd.read_parquet(corpus)
    label_id = model.config.label2id if kind == "classifier" else None
    texts = select_texts(
        docs,
        heldout_doc_ids(cache, holdout_fraction),
        label_id,
        split_labelled(docs, finetune.eval_fraction, seed)[1] if label_id else None,
        cfg.max_docs,
        seed,
    )
    batches = make_batches(
        load_tokenizer(model_ref),
        texts.texts,
        texts.labels,
        act.max_length,
        cfg.batch_size,
        act.special_tokens == "exclude",
        dev,
        finetune.mlm_probability if kind == "masked_lm" else None,
        seed,
    )
    result = splice_eval(
        model, kind, layer, lambda x: sae.decode(sae.encode(x.float())), batches
    )
    result = {**result, "texts": texts.source, "model_ref": model_ref}
    result["sae"] = str(sae_dir)
    result["config"] = cfg.to_dict()
    log.info("layer %d spliced (%s): %s", layer, kind, result["conditions"])
    write_json(_nan_as_null(result), out)


def _nan_as_null(obj: Any) -> Any:
    """NaN (nothing to recover) as JSON null, which strict parsers accept."""
    if isinstance(obj, dict):
        return {k: _nan_as_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_as_null(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
