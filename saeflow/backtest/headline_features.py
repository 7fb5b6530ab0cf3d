"""Features of each headline: pooled SAE activations plus classifier sentiment.

One forward pass of the fine-tuned sequence classifier per batch gives both its
hidden states (encoded by the layer's SAE, kept only for the most
domain-specialized features, pooled over the headline's tokens) and its sentiment
probabilities. Columns are named ``L{layer}_f{feature}`` and ``sent_{label}`` so
importance scores map back to (layer, feature) ids.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch

from saeflow.models.loading import load_tokenizer, resolve_model_ref, token_batches
from saeflow.sae.model import TopKSAE

log = logging.getLogger(__name__)

_FEATURE_COLUMN = re.compile(r"^L(\d+)_f(\d+)$")


class FeatureId(NamedTuple):
    """Where a feature column comes from."""

    layer: int
    feature: int


def parse_feature_column(name: str) -> FeatureId | None:
    """(layer, feature) of an ``L{layer}_f{feature}`` column; None for others."""
    m = _FEATURE_COLUMN.match(name)
    return FeatureId(int(m[1]), int(m[2])) if m else None


def top_specialized(table: pd.DataFrame, n: int, where: str) -> list[int]:
    """Ids of the `n` most domain-specialized features of a specialization table."""
    for column in ("feature", "specialization"):
        if column not in table.columns:
            raise ValueError(f"{where}: missing column {column!r}")
    ranked = table[table["specialization"] > 0].nlargest(n, "specialization")
    return sorted(int(f) for f in ranked["feature"])


def headline_features(
    texts: Sequence[str],
    model_ref: str,
    saes: dict[int, str | Path],
    feature_ids: dict[int, list[int]],
    sentiment: bool = True,
    pooling: Literal["mean", "max"] = "mean",
    exclude_special: bool = True,
    batch_size: int = 64,
    max_length: int = 64,
    device: str = "cpu",
) -> pd.DataFrame:
    """Per text: pooled activations of the chosen SAE features at each layer, and
    (with `sentiment`) the classifier's class probabilities.

    saes: layer → SAE folder; feature_ids: layer → kept feature ids.
    """
    # The modeling code takes seconds to import; the backtest rule only needs
    # parse_feature_column from this module.
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model_ref(model_ref)
    config = AutoConfig.from_pretrained(path)
    if sentiment and not any(
        a.endswith("ForSequenceClassification") for a in config.architectures or []
    ):
        raise ValueError(
            f"{model_ref}: not a sequence classifier, so no sentiment; set "
            "backtest.features.sentiment: false"
        )
    tok = load_tokenizer(model_ref)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    model = model.to(device).eval()
    encoders = {layer: TopKSAE.load(d, device) for layer, d in saes.items()}
    # Map every latent to its output column (-1: not kept); (M,) per layer.
    slots = {}
    for layer, ids in feature_ids.items():
        slot = torch.full((encoders[layer].shape.n_latents,), -1, dtype=torch.long)
        slot[torch.as_tensor(ids, dtype=torch.long)] = torch.arange(len(ids))
        slots[layer] = slot.to(device)
    blocks = []
    for _, enc, keep in token_batches(
        tok, texts, max_length, batch_size, exclude_special, device
    ):
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True)
            parts = [
                _pool(
                    encoders[layer],
                    out.hidden_states[layer],
                    keep,
                    slots[layer],
                    pooling,
                )
                for layer in feature_ids
            ]
            if sentiment:
                parts.append(out.logits.softmax(-1))
        blocks.append(torch.cat(parts, dim=1).cpu().numpy())
    columns = [f"L{layer}_f{f}" for layer, ids in feature_ids.items() for f in ids]
    if sentiment:
        columns += [f"sent_{config.id2label[i]}" for i in range(config.num_labels)]
    return pd.DataFrame(np.concatenate(blocks), columns=columns)


def _pool(
    sae: TopKSAE,
    hidden: torch.Tensor,  # (B, T, D)
    keep: torch.Tensor,  # (B, T) bool: tokens that count
    slot: torch.Tensor,  # (M,) latent → output column or -1
    pooling: str,
) -> torch.Tensor:
    """[B, n_kept] activations of the kept latents pooled over each text's tokens."""
    b, t = keep.shape
    n_out = int(slot.max()) + 1
    code = sae.encode(hidden[keep].float())  # vals, idx: (N, k)
    rows = keep.nonzero()[:, 0]  # (N,) text of each token
    col = slot[code.idx]  # (N, k)
    hit = col >= 0
    dense = torch.zeros(len(rows), n_out, device=hidden.device)  # (N, n_out)
    dense[hit.nonzero()[:, 0], col[hit]] = code.vals[hit]
    pooled = torch.zeros(b, n_out, device=hidden.device)
    if pooling == "max":
        return pooled.index_reduce_(0, rows, dense, "amax", include_self=True)
    counts = keep.sum(1, keepdim=True).clamp_min(1)
    return pooled.index_add_(0, rows, dense) / counts
