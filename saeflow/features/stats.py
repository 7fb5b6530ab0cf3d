"""Per-feature activation statistics of an SAE over one corpus, computed streaming.

For every latent: mean activation over all tokens (zeros included), maximum
activation, fraction of tokens on which it fires, and mean activation where
active. Memory is O(M), whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch

from saeflow.sae.data import iter_rows
from saeflow.sae.model import TopKSAE

STAT_COLUMNS = [
    "feature",
    "mean_activation",
    "max_activation",
    "frac_active",
    "mean_when_active",
    "n_tokens",
]


@torch.no_grad()
def feature_stats(sae: TopKSAE, batches: Iterable[torch.Tensor]) -> pd.DataFrame:
    """Accumulate statistics of every latent over batches x: [B, D]."""
    m = sae.shape.n_latents
    device = sae.W_dec.device
    total = torch.zeros(m, dtype=torch.float64, device=device)
    count = torch.zeros(m, dtype=torch.long, device=device)
    peak = torch.zeros(m, device=device)
    n = 0
    for x in batches:
        code = sae.encode(x.to(device))
        active = code.vals > 0
        idx, vals = code.idx[active], code.vals[active]
        total.index_add_(0, idx, vals.double())
        count.index_add_(0, idx, torch.ones_like(idx))
        peak.scatter_reduce_(0, idx, vals, reduce="amax")
        n += len(x)
    if n == 0:
        raise ValueError("no tokens to compute feature statistics on")
    return pd.DataFrame(
        {
            "feature": torch.arange(m).numpy(),
            "mean_activation": (total / n).cpu().numpy(),
            "max_activation": peak.cpu().numpy(),
            "frac_active": (count.double() / n).cpu().numpy(),
            "mean_when_active": (total / count.clamp_min(1)).cpu().numpy(),
            "n_tokens": n,
        }
    )


def feature_stats_of_file(
    sae: TopKSAE, acts_path: str | Path, batch_size: int
) -> pd.DataFrame:
    """`feature_stats` over every row of one activation cache."""
    return feature_stats(sae, iter_rows([acts_path], batch_size))
