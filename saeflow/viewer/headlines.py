"""The viewer's headlines tab: every cached domain text with the fine-tuned
classifier's prediction and its strongest SAE features.

- ``headlines.parquet``: doc_id, text, label, prediction, confidence, correct,
  held_out (in the fine-tuning evaluation split) — one row per domain document
  present in the activation cache, in corpus order;
- ``finetuned/layer_{L}/headline_features.parquet``: doc_id, features, acts,
  tokens — per document the `top_n` features of the fine-tuned model's SAE by
  their maximum activation over the document's tokens, and the token each
  peaks on (what an unlabelled feature's chip shows).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from saeflow.models.finetune import split_labelled
from saeflow.models.loading import load_tokenizer, resolve_model_ref
from saeflow.sae.model import TopKSAE
from saeflow.workflow.config import FinetuneConfig
from saeflow.workflow.device import pick_device
from saeflow.workflow.io import write_parquet

log = logging.getLogger(__name__)


def _doc_batches(
    path: str | Path, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (doc [n], acts [n, D] float32, first row) in runs that never split
    a document."""
    with h5py.File(path, "r") as f:
        doc = f["doc"][:]
        n = len(doc)
        # Cut only where a document starts (or at the end).
        bounds = np.r_[np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]), n]
        lo = 0
        while lo < n:
            hi = int(bounds[np.searchsorted(bounds, lo + batch_size, "right") - 1])
            if hi <= lo:  # one document longer than a batch: take it whole
                hi = int(bounds[np.searchsorted(bounds, lo, "right")])
            yield doc[lo:hi], f["acts"][lo:hi].astype(np.float32, copy=False), lo
            lo = hi


@torch.no_grad()
def headline_features(
    sae: TopKSAE,
    acts_path: str | Path,
    top_n: int,
    batch_size: int,
    decode: Callable[[int], str] | None = None,
) -> pd.DataFrame:
    """Per document of a cache: its top_n features by max activation over
    tokens, and (with `decode`, token id -> text) the token each peaks on."""
    with h5py.File(acts_path, "r") as f:
        doc_ids = f["doc_ids"].asstr()[:]
        token_id = f["token_id"][:] if decode else None
    m = sae.shape.n_latents
    device = sae.W_dec.device
    rows: list[tuple[str, list[int], list[float], list[str]]] = []
    for doc, x, first in _doc_batches(acts_path, batch_size):
        code = sae.encode(torch.from_numpy(x).to(device))
        docs, local = np.unique(doc, return_inverse=True)
        peak = torch.zeros(len(docs) * m, device=device)  # (docs × M) max per doc
        key = torch.from_numpy(local).to(device)[:, None] * m + code.idx
        peak.scatter_reduce_(0, key.ravel(), code.vals.ravel(), reduce="amax")
        # The row where each (doc, feature) reaches its peak: (docs × M).
        at_peak = (code.vals == peak[key]) & (code.vals > 0)
        rows_of = torch.arange(len(doc), device=device)[:, None].expand_as(key)
        where = torch.full((len(docs) * m,), -1, dtype=torch.long, device=device)
        where.scatter_(0, key[at_peak], rows_of[at_peak])
        vals, idx = peak.view(len(docs), m).topk(min(top_n, m), dim=1)
        where = where.view(len(docs), m).gather(1, idx).cpu().numpy()
        for d, v, i, w in zip(
            docs, vals.cpu().numpy(), idx.cpu().numpy(), where, strict=True
        ):
            keep = v > 0
            tokens = (
                [decode(int(token_id[first + r])) for r in w[keep]] if decode else []
            )
            rows.append(
                (doc_ids[d], i[keep].tolist(), v[keep].round(4).tolist(), tokens)
            )
    return pd.DataFrame(rows, columns=["doc_id", "features", "acts", "tokens"])


def classifier_ref(ref: str) -> str | None:
    """The model's path or id when it has a sequence-classification head, else None."""
    archs = AutoConfig.from_pretrained(resolve_model_ref(ref)).architectures or []
    return ref if any(a.endswith("ForSequenceClassification") for a in archs) else None


@torch.no_grad()
def predict(
    ref: str, texts: list[str], max_length: int, batch_size: int, device: str
) -> tuple[list[str], np.ndarray]:
    """Predicted class names and their probabilities for `texts`."""
    tok = load_tokenizer(ref)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_ref(ref))
    model = model.to(device).eval()
    names = model.config.id2label
    preds: list[str] = []
    probs: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        enc = tok(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        p = model(**enc).logits.softmax(-1)
        best = p.max(-1)
        preds += [names[int(i)] for i in best.indices]
        probs.append(best.values.cpu().numpy())
    return preds, np.concatenate(probs) if probs else np.zeros(0)


def headline_table(
    corpus: pd.DataFrame,
    cached_ids: list[str],
    model_ref: str | None,
    finetune: FinetuneConfig | None,
    seed: int,
    device: str,
) -> pd.DataFrame:
    """Cached domain documents with prediction, correctness and held-out flag.

    Without a classifier (`model_ref` None) predictions are null; `held_out` is
    known only when the workflow made the model (`finetune` given).
    """
    keep = set(cached_ids)
    t = corpus[corpus["doc_id"].isin(keep)][["doc_id", "text", "label"]]
    t = t.reset_index(drop=True)
    t["prediction"], t["confidence"] = None, np.nan
    if model_ref is not None:
        max_length = finetune.max_length if finetune else 128
        preds, probs = predict(model_ref, t["text"].tolist(), max_length, 64, device)
        t["prediction"], t["confidence"] = preds, probs.round(4)
    known = t["label"].notna() & t["prediction"].notna()
    t["correct"] = (t["label"] == t["prediction"]).where(known, None)
    t["held_out"] = None
    if finetune is not None:
        _, held = split_labelled(corpus, finetune.eval_fraction, seed)
        t["held_out"] = t["doc_id"].isin(set(held["doc_id"]))
    return t


def make_viewer_headlines(
    corpus: str | Path,
    acts: dict[int, str | Path],
    saes: dict[int, str | Path],
    model_ref: str,
    finetune: FinetuneConfig | None,
    seed: int,
    top_n: int,
    batch_size: int,
    device: str,
    out_table: str | Path,
    out_features: dict[int, str | Path],
) -> None:
    """Write the headlines table and each layer's per-headline top features."""
    dev = pick_device(device)
    first = acts[min(acts)]
    with h5py.File(first, "r") as f:
        cached = f["doc_ids"].asstr()[:]
        cached = [cached[i] for i in np.unique(f["doc"][:])]
    ref = classifier_ref(model_ref)
    if ref is None:
        log.info("%s has no classification head: no predictions", model_ref)
    table = headline_table(pd.read_parquet(corpus), cached, ref, finetune, seed, dev)
    write_parquet(table, out_table)
    tok = load_tokenizer(model_ref)
    decode = functools.cache(lambda i: tok.decode([i]).strip())
    for layer, path in acts.items():
        sae = TopKSAE.load(saes[layer], dev)
        top = headline_features(sae, path, top_n, batch_size, decode)
        write_parquet(top, out_features[layer])
        log.info("headline features layer %d: %d documents", layer, len(top))
