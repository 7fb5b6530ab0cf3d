"""Latent Scaling: does the other model carry a feature's direction where it fires?

After Minder et al. 2025 (arXiv 2504.02922, sec. 3), applied to two separately
trained SAEs read on the same tokens. For feature j of `sae` (decoder row d_j,
activation f_j(t) on the own model's activations), one scalar per target Y:

    β_j(Y) = d_jᵀ Σ_t f_j(t) Y(t) / (‖d_j‖² Σ_t f_j(t)²)

(the least-squares fit of Y(t) ≈ β f_j(t) d_j over the tokens where j fires).
Two targets per model, as in the paper:

* reconstruction: that model's own SAE reconstruction without its decoder bias
  (what its dictionary says is there);
* error: that model's activation minus its SAE reconstruction, plus, for the
  feature's own model, the feature's own term f_j d_j added back (what its
  dictionary misses).

ν = β_other / β_own per target. ν near 1: the other model carries the direction
where the feature fires (as a feature of its own SAE, ν_reconstruction, or in
what its SAE misses, ν_error); near 0: it does not, so the feature is specific
to its model. A feature that never fires on the compared tokens gets NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch

from saeflow.sae.model import TopKSAE

TARGETS = ("reconstruction", "error")

# Gathered decoder rows per chunk (tokens × k × D floats): bounds memory at any
# SAE width (k = 192, D = 768: ~110 tokens per chunk, 64 MB).
_GATHER_FLOATS = 1 << 24


class LatentScaling(NamedTuple):
    """β per feature and target for both models, and their ratios."""

    beta_own: dict[str, np.ndarray]
    """target -> [M] β on the feature's own model."""
    beta_other: dict[str, np.ndarray]
    """target -> [M] β on the other model, same tokens."""
    nu: dict[str, np.ndarray]
    """target -> [M] β_other / β_own (NaN where the feature never fires)."""
    n_tokens: np.ndarray
    """[M] tokens on which the feature fired."""


def beta_closed_form(f: torch.Tensor, d: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """β_j for dense inputs, the reference of the streamed sums.

    f: [N, M] activations, d: [M, D] decoder rows, y: [N, D] target → [M].
    """
    num = ((f.T @ y) * d).sum(1)
    return num / (d.pow(2).sum(1) * f.pow(2).sum(0))


class ScalingSums:
    """Running Σ_t f_j(t) (d_j · Y(t)) per target, Σ f_j², and firing counts;
    keys name the targets, e.g. ("own", "error")."""

    def __init__(
        self, m: int, device: torch.device, keys: Sequence[tuple[str, str]]
    ) -> None:
        kw = {"dtype": torch.float64, "device": device}
        self.num = {key: torch.zeros(m, **kw) for key in keys}
        self.f2 = torch.zeros(m, **kw)
        self.count = torch.zeros(m, dtype=torch.long, device=device)

    def add(
        self, vals: torch.Tensor, idx: torch.Tensor, d: torch.Tensor, targets: dict
    ) -> None:
        """vals, idx: [n, k] code; d: [M, D] the direction fitted for each
        latent; targets: key -> [n, D]."""
        flat_idx, flat_val = idx.reshape(-1), vals.reshape(-1).double()
        active = flat_val > 0
        flat_idx, flat_val = flat_idx[active], flat_val[active]
        self.f2.index_add_(0, flat_idx, flat_val.pow(2))
        self.count.index_add_(0, flat_idx, torch.ones_like(flat_idx))
        step = max(1, _GATHER_FLOATS // max(1, idx.shape[1] * d.shape[1]))
        for key, y in targets.items():
            proj = torch.cat(
                [
                    torch.einsum("nkd,nd->nk", d[idx[a : a + step]], y[a : a + step])
                    for a in range(0, len(idx), step)
                ]
            )  # (n, k): d_j · Y(t) for each kept latent j of token t
            self.num[key].index_add_(
                0, flat_idx, proj.reshape(-1)[active].double() * flat_val
            )


@torch.no_grad()
def latent_scaling(
    sae: TopKSAE,
    other_sae: TopKSAE,
    pairs: Sequence[tuple[str | Path, np.ndarray, str | Path, np.ndarray]],
    batch_size: int = 4096,
) -> LatentScaling:
    """Latent Scaling of every feature of `sae` against the other model.

    pairs: per corpus (own cache, its rows, other model's cache, its rows), the
    rows of both caches being the same tokens in the same order.
    """
    device = sae.W_dec.device
    d = (sae.W_dec / sae.scale).float()  # decoder rows in input units
    keys = [(side, t) for side in ("own", "other") for t in TARGETS]
    sums = ScalingSums(sae.shape.n_latents, device, keys)
    for x_own, x_other in _paired_batches(pairs, batch_size):
        x_own, x_other = x_own.to(device), x_other.to(device)
        code = sae.encode(x_own)
        own_rec = sae.decode(code)
        other_rec = other_sae.decode(other_sae.encode(x_other))
        targets = {
            ("own", "reconstruction"): own_rec - sae.b_dec / sae.scale,
            ("own", "error"): x_own - own_rec,
            ("other", "reconstruction"): other_rec - other_sae.b_dec / other_sae.scale,
            ("other", "error"): x_other - other_rec,
        }
        sums.add(code.vals.float(), code.idx, d, targets)
    denom = d.double().pow(2).sum(1) * sums.f2
    fired = sums.count > 0
    beta: dict[tuple[str, str], np.ndarray] = {}
    for key, num in sums.num.items():
        b = torch.where(fired, num / denom.clamp_min(1e-30), torch.nan)
        if key == ("own", "error"):
            b = b + 1.0  # the feature's own term f_j d_j, added back in closed form
        beta[key] = b.cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = {t: beta["other", t] / beta["own", t] for t in TARGETS}
    return LatentScaling(
        {t: beta["own", t] for t in TARGETS},
        {t: beta["other", t] for t in TARGETS},
        nu,
        sums.count.cpu().numpy(),
    )


def _paired_batches(
    pairs: Sequence[tuple[str | Path, np.ndarray, str | Path, np.ndarray]],
    batch_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """[n, D] float32 activations of both caches, aligned row for row."""
    for own_path, own_rows, other_path, other_rows in pairs:
        with h5py.File(own_path, "r") as fo, h5py.File(other_path, "r") as ft:
            for a in range(0, len(own_rows), batch_size):
                yield (
                    _read_rows(fo["acts"], own_rows[a : a + batch_size]),
                    _read_rows(ft["acts"], other_rows[a : a + batch_size]),
                )


def _read_rows(acts: h5py.Dataset, rows: np.ndarray) -> torch.Tensor:
    # Aligned rows run nearly in file order: one contiguous read, then pick
    # (h5py's fancy indexing of scattered rows is much slower).
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo <= 4 * len(rows) + 4096:
        picked = acts[lo:hi][rows - lo]
    else:  # scattered: h5py wants increasing unique indices
        uniq, inverse = np.unique(rows, return_inverse=True)
        picked = acts[uniq][inverse]
    return torch.from_numpy(picked.astype(np.float32, copy=False))
