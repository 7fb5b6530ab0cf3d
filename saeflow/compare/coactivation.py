"""Two SAEs' codes on the same tokens: alignment, co-activation, statistics.

The base and the fine-tuned activation caches of one corpus hold one row per
token. With a shared tokenizer the rows are the same tokens in the same order;
`align_tokens` checks that (document, window, position and token id of every
row) and otherwise keeps only the positions where both files hold the same token
with the same tokens before it in its window, so a tokenisation that diverges
mid-text never pairs different words. Too few aligned positions is an error.

Co-activation sums C[j, i] = sum_t z_f[t, j] * z_b[t, i] turn into Pearson
correlations with the features' means and standard deviations over the same
tokens. On the CPU they are scattered from the sparse codes (N * k^2 products),
in column blocks small enough to stay in cache; on a GPU dense GEMMs over token
chunks are faster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from saeflow.sae.data import iter_rows
from saeflow.sae.model import TopKSAE

log = logging.getLogger(__name__)


class TokenAlignmentError(ValueError):
    """The two models' activation caches do not hold the same tokens."""


class Alignment(NamedTuple):
    """Rows of the base and fine-tuned caches of one corpus that are the same token."""

    base_rows: np.ndarray
    """[n] int64 rows of the base file."""
    finetuned_rows: np.ndarray
    """[n] int64 rows of the fine-tuned file, same tokens in the same order."""
    doc: np.ndarray
    """[n] int64 document of each aligned token (index into the base file's docs)."""
    report: dict[str, Any]
    """Counts: rows of each file, identical, aligned, dropped."""


def _token_table(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    with h5py.File(path, "r") as f:
        table = pd.DataFrame(
            {name: f[name][:] for name in ("doc", "window", "pos", "token_id")}
        )
        doc_ids = f["doc_ids"].asstr()[:]
    return table, np.asarray(doc_ids)


def align_tokens(
    base_path: str | Path, finetuned_path: str | Path, min_fraction: float
) -> Alignment:
    """Pair the rows of two caches of one corpus (see module doc)."""
    base, base_docs = _token_table(base_path)
    ft, ft_docs = _token_table(finetuned_path)
    report = {"n_base": len(base), "n_finetuned": len(ft)}
    if len(base) == len(ft) and np.array_equal(base_docs, ft_docs) and base.equals(ft):
        rows = np.arange(len(base))
        report.update(identical=True, n_aligned=len(base), aligned_fraction=1.0)
        return Alignment(rows, rows, base["doc"].to_numpy(np.int64), report)
    # Different rows: join on (document id, window, position), then keep each
    # window's positions up to its first token-id disagreement.
    doc_index = {d: i for i, d in enumerate(base_docs)}
    ft = ft.assign(doc=[doc_index.get(d, -1) for d in ft_docs[ft["doc"]]])
    keys = ["doc", "window", "pos"]
    both = (
        base.reset_index(names="base_row")
        .merge(ft.reset_index(names="finetuned_row"), on=keys, suffixes=("", "_ft"))
        .sort_values(keys, kind="stable")
    )
    differs = both["token_id"].to_numpy() != both["token_id_ft"].to_numpy()
    diverged = (
        pd.Series(differs, index=both.index).groupby([both["doc"], both["window"]])
    ).cummax()
    good = both[~diverged.to_numpy()]
    n_aligned = len(good)
    fraction = n_aligned / max(len(base), len(ft), 1)
    report.update(
        identical=False,
        n_same_position=len(both),
        n_token_mismatch_or_after=int(diverged.sum()),
        n_aligned=n_aligned,
        aligned_fraction=fraction,
    )
    if fraction < min_fraction or n_aligned == 0:
        raise TokenAlignmentError(
            f"{base_path} and {finetuned_path} hold the same token at only "
            f"{fraction:.1%} of positions ({n_aligned} of {max(len(base), len(ft))}); "
            "activation correlation needs both models to read the same tokens "
            "(a shared tokenizer). Lower compare.min_aligned_fraction (now "
            f"{min_fraction}) to compare on the aligned positions only."
        )
    log.warning("token alignment of %s: %s", base_path, report)
    return Alignment(
        good["base_row"].to_numpy(np.int64),
        good["finetuned_row"].to_numpy(np.int64),
        good["doc"].to_numpy(np.int64),
        report,
    )


CODES_BUDGET_BYTES = 2 << 30
"""What the compare stage's codes may hold when compare.max_tokens is null."""


def auto_max_tokens(k: int, n_corpora: int, budget: int = CODES_BUDGET_BYTES) -> int:
    """Aligned tokens per corpus whose codes fit `budget` bytes: three SAEs' CSR
    codes (value and index, 8 B per active latent), the scatter's padded int64 and
    float64 copy of one (16 B) and its column-major copy of another (8 B). The
    codes of every aligned token stay in memory (correlations, bootstrap), so
    without a cap they grow with the corpus: at k = 192, 10 M tokens would take
    ~90 GB. ~700 k tokens per corpus at k = 32, ~116 k at k = 192."""
    per_token = (3 * 8 + 16 + 8) * k
    return max(1, budget // (per_token * n_corpora))


def subsample_docs(
    alignment: Alignment, max_tokens: int | None, rng: np.random.Generator
) -> Alignment:
    """Keep whole documents, in a random order, until `max_tokens` are reached."""
    if max_tokens is None or len(alignment.doc) <= max_tokens:
        return alignment
    docs, counts = np.unique(alignment.doc, return_counts=True)
    order = rng.permutation(len(docs))
    n_keep = int(np.searchsorted(np.cumsum(counts[order]), max_tokens, "right"))
    keep = np.isin(alignment.doc, docs[order[: max(n_keep, 1)]])
    report = {**alignment.report, "n_used": int(keep.sum()), "max_tokens": max_tokens}
    return Alignment(
        alignment.base_rows[keep],
        alignment.finetuned_rows[keep],
        alignment.doc[keep],
        report,
    )


class Codes(NamedTuple):
    """SAE codes of a set of tokens, any SAE kind."""

    mat: sp.csr_matrix
    """[N, M] activations; only non-zero ones stored."""

    @property
    def n_latents(self) -> int:
        return self.mat.shape[1]

    def take(self, rows: np.ndarray) -> Codes:
        return Codes(self.mat[rows])


def concat_codes(parts: Sequence[Codes]) -> Codes:
    return Codes(sp.vstack([p.mat for p in parts], format="csr"))


def _sparse_code(vals: torch.Tensor, idx: torch.Tensor, m: int) -> sp.csr_matrix:
    vals, idx = vals.float().cpu().numpy(), idx.cpu().numpy()
    n, k = vals.shape
    mat = sp.csr_matrix(
        (vals.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, m)
    )
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


@torch.no_grad()
def encode_rows(
    saes: Sequence[TopKSAE], path: str | Path, rows: np.ndarray, batch_size: int
) -> list[Codes]:
    """Codes of the given rows (any order, repeats allowed) of one activation
    cache under each SAE, reading the file once and encoding only those rows."""
    needed = np.unique(rows)
    parts: list[list[sp.csr_matrix]] = [[] for _ in saes]
    start = 0
    for batch in iter_rows([path], batch_size):
        lo, hi = np.searchsorted(needed, [start, start + len(batch)])
        x = batch[torch.from_numpy(needed[lo:hi] - start)]
        start += len(batch)
        if len(x) == 0:
            continue
        for sae, out in zip(saes, parts, strict=True):
            code = sae.encode(x.to(sae.W_dec.device))
            out.append(_sparse_code(code.vals, code.idx, sae.shape.n_latents))
    where = np.searchsorted(needed, rows)
    return [
        Codes(sp.vstack(out, format="csr")[where])
        if out
        else Codes(sp.csr_matrix((len(rows), sae.shape.n_latents), dtype=np.float32))
        for sae, out in zip(saes, parts, strict=True)
    ]


class Moments(NamedTuple):
    """Per-feature moments over N tokens."""

    mean: np.ndarray
    """[M] mean activation (zeros included)."""
    std: np.ndarray
    """[M] population standard deviation."""
    frac_active: np.ndarray
    """[M] fraction of tokens with a non-zero activation."""
    n: int
    """Tokens."""


def moments(mat: sp.csr_matrix) -> Moments:
    n = mat.shape[0]
    mean = np.asarray(mat.sum(0), np.float64).ravel() / n
    sq = np.asarray(mat.multiply(mat).sum(0), np.float64).ravel() / n
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    active = np.bincount(mat.indices, minlength=mat.shape[1]) / n
    return Moments(mean, std, active, n)


def cooccurrence_blocks(
    f: Codes,
    b: Codes,
    method: str,
    device: str,
    block_entries: int = 1 << 19,
    yield_entries: int = 1 << 24,
    gemm_entries: int = 1 << 28,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Blocks (0, c0, [Mf, c]) of C = Z_f^T Z_b over the same N tokens.

    scatter: for base-feature column blocks of about `block_entries` entries of C,
    each base activation times the k fine-tuned activations of its token is
    accumulated with bincount (a cache-resident accumulator); blocks are handed
    out `yield_entries` at a time (float64). gemm: dense GEMMs of token chunks
    on `device`, one pass over the tokens per column slice of about
    `gemm_entries` entries of C (float32: 1 GiB), handed out `yield_entries` at a
    time; C is never whole (at Mf = Mb = 24,576 it would be 2.4 GB).
    """
    if method == "gemm":
        width = max(1, yield_entries // f.n_latents)
        span = max(width, gemm_entries // f.n_latents // width * width)
        for s0 in range(0, b.n_latents, span):
            out = _cooccurrence_gemm(f, b, device, s0, min(b.n_latents, s0 + span))
            for c0 in range(0, out.shape[1], width):
                yield 0, s0 + c0, out[:, c0 : c0 + width]
        return
    zb = b.mat.tocsc()
    mf, mb = f.n_latents, b.n_latents
    step = max(1, block_entries // mf)
    width = max(step, yield_entries // mf)
    f_idx, f_val = _padded(f.mat)
    # Base activations per pass; each pairs with its token's fine-tuned ones.
    chunk = max(1024, (1 << 22) // max(f_idx.shape[1], 1))
    for w0 in range(0, mb, width):
        w1 = min(mb, w0 + width)
        out = np.empty((mf, w1 - w0))
        for c0 in range(w0, w1, step):
            c1 = min(w1, c0 + step)
            p0, p1 = zb.indptr[c0], zb.indptr[c1]
            local = np.repeat(np.arange(c1 - c0), np.diff(zb.indptr[c0 : c1 + 1]))
            acc = np.zeros(mf * (c1 - c0))
            for s in range(p0, p1, chunk):
                e = slice(s, min(s + chunk, p1))
                tokens = zb.indices[e]
                keys = f_idx[tokens] * (c1 - c0) + local[s - p0 : e.stop - p0, None]
                weights = f_val[tokens] * zb.data[e, None].astype(np.float64)
                acc += np.bincount(keys.ravel(), weights.ravel(), minlength=acc.size)
            out[:, c0 - w0 : c1 - w0] = acc.reshape(mf, c1 - c0)
        yield 0, w0, torch.from_numpy(out)


def _padded(mat: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """[N, w] latent ids and values of each row, padded with zeros (w = most
    non-zeros of a row; padding adds 0 to latent 0)."""
    lens = np.diff(mat.indptr)
    width = int(lens.max()) if len(lens) else 0
    idx = np.zeros((mat.shape[0], width), np.int64)
    val = np.zeros((mat.shape[0], width), np.float64)
    rows = np.repeat(np.arange(mat.shape[0]), lens)
    cols = np.arange(mat.nnz) - np.repeat(mat.indptr[:-1], lens)
    idx[rows, cols], val[rows, cols] = mat.indices, mat.data
    return idx, val


def _cooccurrence_gemm(
    f: Codes, b: Codes, device: str, c0: int, c1: int, chunk: int = 4096
) -> torch.Tensor:
    """[Mf, c1 - c0] float32 on `device`: columns c0:c1 of Z_f^T Z_b, summed
    over token chunks of dense GEMMs."""
    out = torch.zeros(f.n_latents, c1 - c0, device=device)
    zb_cols = b.mat[:, c0:c1].tocsr()
    for s in range(0, f.mat.shape[0], chunk):
        zf = torch.from_numpy(f.mat[s : s + chunk].toarray()).to(device)
        zb = torch.from_numpy(zb_cols[s : s + chunk].toarray()).to(device)
        out.addmm_(zf.T, zb)
    return out


def correlation_blocks(
    f: Codes,
    b: Codes,
    mf: Moments,
    mb: Moments,
    method: str,
    device: str,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Pearson correlation of every fine-tuned with every base feature, by blocks.

    NaN where either feature never varies (never fires) on these tokens.
    """

    def inverse(std: np.ndarray) -> torch.Tensor:
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.where(std > 0, 1.0 / std, np.nan)).float()

    mean_f = torch.from_numpy(mf.mean).float()
    inv_f = inverse(mf.std)
    for r0, c0, block in cooccurrence_blocks(f, b, method, device):
        dev = block.device
        cols = slice(c0, c0 + block.shape[1])
        mean_b = torch.from_numpy(mb.mean[cols]).float().to(dev)
        inv_b = inverse(mb.std[cols]).to(dev)
        # In place (blocks are used once), in float32 (fine for correlations),
        # where the block lives: (C / n - mean_f mean_b^T) / (std_f std_b^T).
        corr = block.float().mul_(1.0 / mf.n)
        corr.addr_(mean_f.to(dev), mean_b, alpha=-1.0)
        corr.mul_(inv_f.to(dev)[:, None]).mul_(inv_b[None, :])
        yield r0, c0, corr.clamp_(-1.0, 1.0).cpu()


class DocBootstrap:
    """One shared set of document resamples of a corpus, so that statistics of the
    two models (same tokens, same documents) are resampled together (paired)."""

    def __init__(self, doc: np.ndarray, n_boot: int, rng: np.random.Generator):
        docs, self.inverse = np.unique(doc, return_inverse=True)
        n_docs = len(docs)
        # Resample counts: how often each document is drawn, per resample.
        self.weights = rng.multinomial(
            n_docs, np.full(n_docs, 1.0 / n_docs), size=n_boot
        ).astype(np.float64)  # (B, n_docs)
        tokens = np.bincount(self.inverse, minlength=n_docs).astype(np.float64)
        self.denominator = self.weights @ tokens  # (B,) tokens per resample
        self.indicator = sp.csr_matrix(
            (np.ones(len(doc)), (self.inverse, np.arange(len(doc)))),
            shape=(n_docs, len(doc)),
        )

    def means(self, mat: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature means over all tokens [M] and over each resample [B, M]."""
        per_doc = (self.indicator @ mat).tocsc()  # (n_docs, M) activation sums
        mean = np.asarray(per_doc.sum(0)).ravel() / mat.shape[0]
        boot = np.asarray(per_doc.T @ self.weights.T).T  # (B, M)
        return mean, boot / self.denominator[:, None]


def interval(boot: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 (NaN columns stay NaN)."""
    lo, hi = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return lo, hi
