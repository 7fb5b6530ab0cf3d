"""Match the features of two SAEs one-to-one, and decide which matches are real.

Scores between fine-tuned features (rows) and base features (columns), decoder
cosine or activation correlation, arrive as dense blocks of the [Mf, Mb] score
matrix, so the whole matrix exists only when it is small. The assignment
maximises the summed score with at most one partner per feature, where a feature
left without partner scores 0, so a negative score never beats no partner:

* dense (both SAEs have at most `dense_max_latents` latents):
  `scipy.optimize.linear_sum_assignment` on max(S, 0), exact;
* sparse (larger): the best `candidates` partners of every row and of every
  column form a candidate graph, each row also gets a private "no partner" edge
  so that a full matching always exists, and
  `scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp, the sparse
  form of the same Jonker-Volgenant algorithm) solves it exactly on that graph.
  The result is the dense optimum unless that optimum pairs two features that
  are both outside each other's top `candidates`; bench/compare_match.py
  measures the agreement.

A match is real when its score exceeds the `null_quantile` of the scores that the
same assignment gives when the fine-tuned SAE is replaced by a null SAE: random
features drawn with the fine-tuned SAE's mean and covariance of decoder and
encoder rows, reading the fine-tuned activations. Chance alignment inside the
subspace where features live is then not taken for a shared feature, and a
dictionary unrelated to the base one matches about 1 - `null_quantile` of its
features.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from saeflow.sae.model import TopKSAE

Block = tuple[int, int, torch.Tensor]
"""(first row, first column, [r, c] float32 scores) of the score matrix."""


class Assignment(NamedTuple):
    """A one-to-one assignment of rows (fine-tuned) to columns (base)."""

    partner: np.ndarray
    """[n_rows] int64: assigned column, -1 for none."""
    score: np.ndarray
    """[n_rows] float32: score of the assigned pair, NaN for none."""
    method: str
    """"dense" or "sparse"."""
    n_edges: int
    """Pairs the assignment chose from (n_rows * n_cols when dense)."""


class TopCandidates:
    """Running best `c` columns of every row and best `c` rows of every column,
    fed block by block; memory O((n_rows + n_cols) * c)."""

    def __init__(self, n_rows: int, n_cols: int, c: int, device: str = "cpu"):
        self.n_rows, self.n_cols = n_rows, n_cols
        kr, kc = min(c, n_cols), min(c, n_rows)
        self.row_val = torch.full((n_rows, kr), -torch.inf, device=device)
        self.row_idx = torch.full((n_rows, kr), -1, dtype=torch.long, device=device)
        self.col_val = torch.full((n_cols, kc), -torch.inf, device=device)
        self.col_idx = torch.full((n_cols, kc), -1, dtype=torch.long, device=device)

    def add(self, r0: int, c0: int, block: torch.Tensor) -> None:
        """Merge a [r, c] block whose top-left entry is (r0, c0)."""
        block = block.to(self.row_val.device, torch.float32)
        kr = min(self.row_val.shape[1], block.shape[1])
        kc = min(self.col_val.shape[1], block.shape[0])
        rv, ri = block.topk(kr, dim=1)
        # A contiguous transpose first: top-k along a strided dimension is slower.
        cv, ci = block.T.contiguous().topk(kc, dim=1)
        _merge(self.row_val, self.row_idx, r0, rv, ri + c0)
        _merge(self.col_val, self.col_idx, c0, cv, ci + r0)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct candidate pairs: (rows, cols, scores), finite scores only."""
        kr, kc = self.row_idx.shape[1], self.col_idx.shape[1]
        rows = torch.cat(
            [
                torch.arange(self.n_rows).repeat_interleave(kr),
                self.col_idx.cpu().reshape(-1),
            ]
        )
        cols = torch.cat(
            [
                self.row_idx.cpu().reshape(-1),
                torch.arange(self.n_cols).repeat_interleave(kc),
            ]
        )
        vals = torch.cat(
            [self.row_val.cpu().reshape(-1), self.col_val.cpu().reshape(-1)]
        )
        ok = torch.isfinite(vals) & (rows >= 0) & (cols >= 0)
        rows, cols, vals = rows[ok].numpy(), cols[ok].numpy(), vals[ok].numpy()
        _, first = np.unique(rows * self.n_cols + cols, return_index=True)
        return rows[first], cols[first], vals[first]


def _merge(
    val: torch.Tensor, idx: torch.Tensor, a: int, bv: torch.Tensor, bi: torch.Tensor
) -> None:
    """Keep the best of rows a.. of (val, idx) and of new candidates (bv, bi)."""
    b = a + bv.shape[0]
    cat_v = torch.cat([val[a:b], bv], dim=1)
    cat_i = torch.cat([idx[a:b], bi], dim=1)
    top_v, pos = cat_v.topk(val.shape[1], dim=1)
    val[a:b] = top_v
    idx[a:b] = cat_i.gather(1, pos)


def assign(
    blocks: Iterable[Block],
    n_rows: int,
    n_cols: int,
    dense: bool,
    candidates: int,
    observers: Iterable[PairValues] = (),
) -> Assignment:
    """Optimal one-to-one assignment maximising the summed score (see module doc).

    `blocks` must cover the score matrix exactly once; NaN scores count as 0.
    Each observer sees every block (to pick the scores of given pairs).
    """
    observers = list(observers)
    if dense:
        scores = np.zeros((n_rows, n_cols), np.float32)
    else:
        top = TopCandidates(n_rows, n_cols, candidates)
    for r0, c0, block in blocks:
        block = block.float().nan_to_num_(nan=0.0)  # fresh blocks: in place
        for obs in observers:
            obs.add(r0, c0, block)
        if dense:
            scores[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]] = (
                block.cpu().numpy()
            )
        else:
            top.add(r0, c0, block)
    if dense:
        return _assign_dense(scores)
    return _assign_sparse(*top.edges(), n_rows, n_cols)


def _assign_dense(scores: np.ndarray) -> Assignment:
    rows, cols = linear_sum_assignment(np.maximum(scores, 0.0), maximize=True)
    partner = np.full(scores.shape[0], -1, np.int64)
    picked = scores[rows, cols]
    keep = picked > 0  # a pair at score <= 0 is worth no more than no partner
    partner[rows[keep]] = cols[keep]
    return _finish(
        partner, scores[np.arange(len(partner)), partner], "dense", scores.size
    )


def _assign_sparse(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, n_cols: int
) -> Assignment:
    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep].astype(np.float64)
    # Weights shifted by +1: LAPJVsp needs non-zero weights, and every row takes
    # exactly one edge, so a constant shift leaves the optimum unchanged. Row r's
    # "no partner" edge goes to its own dummy column n_cols + r, weight 0 + 1.
    all_rows = np.concatenate([rows, np.arange(n_rows)])
    all_cols = np.concatenate([cols, n_cols + np.arange(n_rows)])
    weights = np.concatenate([vals + 1.0, np.ones(n_rows)])
    graph = sp.csr_matrix(
        (weights, (all_rows, all_cols)), shape=(n_rows, n_cols + n_rows)
    )
    r, c = min_weight_full_bipartite_matching(graph, maximize=True)
    partner = np.full(n_rows, -1, np.int64)
    real = c < n_cols
    partner[r[real]] = c[real]
    picked = np.full(n_rows, np.nan)
    has = np.flatnonzero(partner >= 0)
    picked[has] = np.asarray(graph[has, partner[has]]).ravel() - 1.0
    return _finish(partner, picked, "sparse", len(rows))


def _finish(partner: np.ndarray, picked: np.ndarray, method: str, n: int) -> Assignment:
    score = np.where(partner >= 0, picked, np.nan).astype(np.float32)
    return Assignment(partner, score, method, int(n))


class PairValues:
    """Picks the scores of given (row, col) pairs out of a stream of blocks."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self.rows, self.cols = np.asarray(rows), np.asarray(cols)
        self.values = np.full(len(self.rows), np.nan, np.float32)

    def add(self, r0: int, c0: int, block: torch.Tensor) -> None:
        r, c = block.shape
        inside = (
            (self.rows >= r0)
            & (self.rows < r0 + r)
            & (self.cols >= c0)
            & (self.cols < c0 + c)
        )
        if inside.any():
            rr = torch.from_numpy(self.rows[inside] - r0).to(block.device)
            cc = torch.from_numpy(self.cols[inside] - c0).to(block.device)
            self.values[inside] = block[rr, cc].float().cpu().numpy()


def cosine_blocks(
    rows: torch.Tensor, cols: torch.Tensor, block_size: int
) -> Iterator[Block]:
    """Cosine similarity of every row vector with every column vector, by row blocks.

    rows: [Mf, D], cols: [Mb, D] (decoder directions).
    """
    a = F.normalize(rows.float(), dim=1)
    b = F.normalize(cols.float(), dim=1)
    for r0 in range(0, len(a), block_size):
        yield r0, 0, a[r0 : r0 + block_size] @ b.T


def null_sae(sae: TopKSAE, seed: int, init: TopKSAE | None = None) -> TopKSAE:
    """An SAE of random features with `sae`'s statistics.

    Without `init`: decoder and encoder rows drawn from Gaussians with the mean and
    covariance of `sae`'s rows. With `init` (the initial weights that `sae` and
    the SAE it is compared with both started from): `init`'s rows moved by random
    displacements drawn with the mean and covariance of `sae`'s own displacements
    from `init`, so that what the two SAEs share only through their common start
    is not counted as a shared feature. Decoder rows are unit-normalised, encoder
    biases permuted; input scale, b_dec and any batchtopk threshold are kept.
    """
    gen = torch.Generator().manual_seed(seed)
    null = TopKSAE(sae.shape, seed=seed)
    with torch.no_grad():
        for name in ("W_dec", "W_enc"):
            rows = getattr(sae, name).detach().cpu()
            if init is None:
                drawn = _gaussian_like(rows, gen)
            else:
                start = getattr(init, name).detach().cpu()
                drawn = start + _gaussian_like(rows - start, gen)
            getattr(null, name).copy_(drawn)
        null.renormalize_decoder()
        perm = torch.randperm(sae.shape.n_latents, generator=gen)
        null.b_enc.copy_(sae.b_enc.detach().cpu()[perm])
        null.b_dec.copy_(sae.b_dec.detach().cpu())
        null.scale.copy_(sae.scale.detach().cpu())
        if hasattr(sae, "threshold"):
            null.threshold.copy_(sae.threshold.detach().cpu())
    return null.to(sae.W_dec.device).eval()


def init_similarity(sae: TopKSAE, init: TopKSAE) -> float:
    """Median cosine between each decoder row and the same row of `init` (about
    1/sqrt(D) for an SAE that did not start from `init`)."""
    if sae.shape.n_latents != init.shape.n_latents or sae.shape.d_in != init.shape.d_in:
        return 0.0
    cos = F.cosine_similarity(
        sae.W_dec.detach().cpu().float(), init.W_dec.detach().cpu().float(), dim=1
    )
    return float(cos.median())


def _gaussian_like(rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[M, D] draws from N(mean, cov) of the rows of `rows`."""
    x = rows.detach().cpu().double()
    mean = x.mean(0)
    centered = x - mean
    cov = centered.T @ centered / max(len(x) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0).sqrt()  # root @ root.T == cov
    z = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return (mean + z @ root.T).float()


def null_threshold(null: Assignment, quantile: float) -> float:
    """The `quantile` of the null's assigned scores (no partner counts as 0)."""
    return float(np.quantile(np.nan_to_num(null.score, nan=0.0), quantile))


def null_p_values(scores: np.ndarray, null: Assignment) -> np.ndarray:
    """(1 + #null scores >= s) / (1 + n) for each score; NaN stays NaN."""
    ref = np.sort(np.nan_to_num(null.score, nan=0.0))
    above = len(ref) - np.searchsorted(ref, np.nan_to_num(scores, nan=-np.inf), "left")
    p = (1.0 + above) / (1.0 + len(ref))
    return np.where(np.isnan(scores), np.nan, p)


def bootstrap_fraction(
    mask: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the fraction of True in `mask`, features resampled."""
    mask = np.asarray(mask, bool)
    if len(mask) == 0:
        return (float("nan"), float("nan"))
    # Resampling n features with replacement draws each from the mask's own
    # fraction p, so the resampled count is exactly Binomial(n, p).
    fractions = rng.binomial(len(mask), mask.mean(), size=n_boot) / len(mask)
    lo, hi = np.quantile(fractions, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)
