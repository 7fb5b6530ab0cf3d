"""Examples per SAE feature: top-activating contexts, activation-quantile samples and
non-activating negatives, streamed from the activation caches in two passes.

Pass 1 encodes every cached token once and keeps, per feature, (a) the `n_top`
documents with the highest peak activation (one example per document, so a long
document cannot fill the list) and (b) a uniform reservoir of active occurrences
(bottom-`reservoir` random keys), both merged per batch with sorts over
(feature, value, row) triples: memory is O(M · (n_top + reservoir)).
Pass 1 also writes every row's code to memory-mapped files (on disk, N · k · 8
bytes). Examples are then chosen, cut and tabled `FEATURE_BLOCK` features at a
time, reading each window's per-token activation of its feature off those files,
and `make_examples` writes each block's rows as they come: memory stays bounded
at any M (before, every feature's candidates and windows were held at once: 2.4 GB
peak at M = 6,144 on 4 k tokens). "Similar" negatives draw their candidates from at
most `SIMILAR_POOL` occurrences of the feature's peak tokens, so choosing them
costs O(M), not O(M · N), on a large corpus.

Examples used to write a label (`split="explain"`: the top contexts) never share a
document with those used to score it (`split="score"`: quantile samples and
negatives). Negatives have zero activation of their feature on every token of
their window; "similar" negatives are centred on a token whose id is one of the
feature's most frequent peak tokens.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saeflow.examples.config import ExampleConfig
from saeflow.sae.data import iter_rows
from saeflow.sae.model import TopKSAE

log = logging.getLogger(__name__)

EXAMPLE_COLUMNS = [
    "feature",
    "kind",
    "split",
    "corpus",
    "doc_id",
    "row",
    "tokens",
    "acts",
    "peak",
    "activation",
    "quantile",
]

FEATURE_BLOCK = 2048
"""Features whose examples are chosen, cut and written together."""
SIMILAR_POOL = 1 << 16
"""Occurrences of a feature's peak tokens drawn as similar-negative candidates
(all of them when fewer)."""


class Corpus(NamedTuple):
    """One activation cache and the per-row metadata needed to cut windows."""

    name: str
    """Corpus name ("domain" | "general")."""
    path: Path
    """HDF5 activation file."""
    doc: np.ndarray
    """[N] document index per row."""
    seg_start: np.ndarray
    """[N] first row of the row's (doc, window) segment."""
    seg_stop: np.ndarray
    """[N] one past the last row of the segment."""
    token_id: np.ndarray
    """[N] token id per row."""
    doc_ids: np.ndarray
    """[n_docs] document ids."""


def open_corpus(name: str, path: str | Path) -> Corpus:
    """Read the small per-row columns of one cache (not the activations)."""
    with h5py.File(path, "r") as f:
        for col in ("acts", "doc", "window", "token_id", "doc_ids"):
            if col not in f:
                raise ValueError(f"{path}: activation cache lacks dataset {col!r}")
        doc, window = f["doc"][:], f["window"][:]
        token_id = f["token_id"][:]
        doc_ids = f["doc_ids"].asstr()[:]
    n = len(doc)
    new = np.r_[True, (doc[1:] != doc[:-1]) | (window[1:] != window[:-1])]
    starts = np.flatnonzero(new)
    seg = np.cumsum(new) - 1
    stops = np.r_[starts[1:], n]
    return Corpus(name, Path(path), doc, starts[seg], stops[seg], token_id, doc_ids)


class _Rows(NamedTuple):
    """Per-row columns of all corpora stacked in global row order."""

    docs: np.ndarray  # [N] int64 document number unique across corpora
    token_id: np.ndarray  # [N] token id
    by_token: np.ndarray  # [N] rows sorted by token id (stable)
    sorted_tokens: np.ndarray  # [N] token_id[by_token]
    seg_start: np.ndarray  # [N] global first row of the row's segment
    seg_stop: np.ndarray  # [N] one past its last row


def _stack_rows(corpora: Sequence[Corpus]) -> _Rows:
    offsets = _offsets(corpora)
    token_id = np.concatenate([c.token_id for c in corpora])
    by_token = np.argsort(token_id, kind="stable")
    return _Rows(
        _global_docs(corpora),
        token_id,
        by_token,
        token_id[by_token],
        np.concatenate([c.seg_start + offsets[i] for i, c in enumerate(corpora)]),
        np.concatenate([c.seg_stop + offsets[i] for i, c in enumerate(corpora)]),
    )


def _encode_batches(
    sae: TopKSAE, corpora: Sequence[Corpus], batch_size: int, desc: str
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (global first row, idx [B, k], vals [B, k]) over all corpora in order."""
    device = sae.W_dec.device
    total = sum(len(c.doc) for c in corpora)
    offset = 0
    with tqdm(total=total, desc=desc, unit="tok") as bar:
        for c in corpora:
            for x in iter_rows([c.path], batch_size):
                with torch.no_grad():
                    code = sae.encode(x.to(device))
                yield offset, code.idx.cpu(), code.vals.float().cpu()
                offset += len(x)
                bar.update(len(x))


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal (sorted) `group` values."""
    start = np.r_[True, group[1:] != group[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(group)), 0))
    return np.arange(len(group)) - first


def _desc_bits(val: np.ndarray) -> np.ndarray:
    """uint32 keys that sort non-negative float32 values in descending order."""
    return np.uint32(0xFFFFFFFF) - val.astype(np.float32).view(np.uint32)


class _TopBuffer:
    """Per feature, the n highest (value, -row) entries with distinct documents.

    Entries are kept sorted by (feature, value desc, row); one int64 key per entry
    (feature in the high 32 bits) makes each merge a single argsort.
    """

    def __init__(self, m: int, n: int) -> None:
        self.n = n
        self.feat = np.empty(0, np.int64)
        self.val = np.empty(0, np.float32)
        self.row = np.empty(0, np.int64)
        self.doc = np.empty(0, np.int64)
        self.floor = np.full(m, -np.inf, np.float32)  # nth value once full

    def add(self, feat, val, row, doc) -> None:
        """Merge new active entries; within one call `row` must be ascending."""
        keep = val >= self.floor[feat]
        feat = np.r_[self.feat, feat[keep]]
        val = np.r_[self.val, val[keep]]
        row = np.r_[self.row, row[keep]]
        doc = np.r_[self.doc, doc[keep]]
        # Stable: equal values stay in row order (old entries precede new rows).
        o = np.argsort((feat << 32) | _desc_bits(val), kind="stable")
        # One entry per (feature, document): the first, i.e. its peak.
        _, first = np.unique((feat[o] << 32) | doc[o], return_index=True)
        o = o[np.sort(first)]
        o = o[_rank_in_group(feat[o]) < self.n]
        self.feat, self.val, self.row, self.doc = feat[o], val[o], row[o], doc[o]
        full = np.flatnonzero(_rank_in_group(self.feat) == self.n - 1)
        self.floor[self.feat[full]] = self.val[full]


class _Reservoir:
    """Per feature, a uniform sample of n active occurrences (smallest random keys)."""

    def __init__(self, m: int, n: int) -> None:
        self.n = n
        self.key = np.empty(0, np.int64)  # feature << 32 | random uint32
        self.val = np.empty(0, np.float32)
        self.row = np.empty(0, np.int64)
        self.ceil = np.full(m, np.iinfo(np.int64).max)  # largest kept key once full

    @property
    def feat(self) -> np.ndarray:
        return self.key >> 32

    def add(self, feat, rand, val, row) -> None:
        """Merge new entries; `rand` are their random uint32 keys."""
        key = (feat << 32) | rand.astype(np.int64)
        keep = key <= self.ceil[feat]
        key = np.r_[self.key, key[keep]]
        val = np.r_[self.val, val[keep]]
        row = np.r_[self.row, row[keep]]
        o = np.argsort(key)
        o = o[_rank_in_group(key[o] >> 32) < self.n]
        self.key, self.val, self.row = key[o], val[o], row[o]
        full = np.flatnonzero(_rank_in_group(self.feat) == self.n - 1)
        self.ceil[self.feat[full]] = self.key[full]


class _Code(NamedTuple):
    """The sparse code of every cached row, on disk (memory-mapped)."""

    idx: np.ndarray  # (N, k) int32
    vals: np.ndarray  # (N, k) float32


class _Chosen(NamedTuple):
    """Examples chosen between the passes, one entry per (candidate) example."""

    feature: np.ndarray  # (E,)
    kind: np.ndarray  # (E,) str
    row: np.ndarray  # (E,) global row of the peak
    quantile: np.ndarray  # (E,) float, nan when not a quantile sample


def _scan(
    sae: TopKSAE,
    corpora: Sequence[Corpus],
    cfg: ExampleConfig,
    seed: int,
    tmp: Path,
) -> tuple[_TopBuffer, _Reservoir, _Code]:
    """Pass 1: top documents, occurrence reservoir, and the code of every row
    (written to memory-mapped files under `tmp`, so memory stays bounded)."""
    m, k = sae.shape.n_latents, sae.code_width
    n = sum(len(c.doc) for c in corpora)
    code = _Code(
        np.lib.format.open_memmap(tmp / "idx.npy", "w+", np.int32, (n, k)),
        np.lib.format.open_memmap(tmp / "vals.npy", "w+", np.float32, (n, k)),
    )
    top, res = _TopBuffer(m, cfg.n_top), _Reservoir(m, cfg.reservoir)
    rng = np.random.default_rng([seed, 1])
    doc_global = _global_docs(corpora)
    for r0, idx, vals in _encode_batches(sae, corpora, cfg.batch_size, "examples"):
        code.idx[r0 : r0 + len(idx)] = idx.numpy()
        code.vals[r0 : r0 + len(idx)] = vals.numpy()
        active = vals > 0
        b = torch.nonzero(active)[:, 0].numpy()
        feat = idx[active].numpy().astype(np.int64)
        val = vals[active].numpy()
        row = r0 + b
        top.add(feat, val, row, doc_global[row])
        res.add(feat, rng.integers(0, 1 << 32, len(feat)), val, row)
    return top, res, code


def _global_docs(corpora: Sequence[Corpus]) -> np.ndarray:
    """[N_total] a document number unique across corpora, per global row."""
    parts, offset = [], 0
    for c in corpora:
        parts.append(c.doc.astype(np.int64) + offset)
        offset += len(c.doc_ids)
    return np.concatenate(parts)


def _choose(
    top: _TopBuffer,
    res: _Reservoir,
    rows: _Rows,
    cfg: ExampleConfig,
    features: range,
    rng: np.random.Generator,
) -> _Chosen:
    """Pick quantile samples and negative candidates of `features` (consecutive),
    keeping scoring documents apart from the top (explaining) documents of the
    same feature. `rng` is shared by consecutive blocks: the draws are those of
    one pass over all features."""
    docs, token_id = rows.docs, rows.token_id
    top_lo = np.searchsorted(top.feat, np.arange(features.start, features.stop + 1))
    res_lo = np.searchsorted(res.feat, np.arange(features.start, features.stop + 1))
    out: dict[str, list] = {"feature": [], "kind": [], "row": [], "quantile": []}

    def emit(f: int, kind: str, rows, quantile) -> None:
        out["feature"] += [f] * len(rows)
        out["kind"] += [kind] * len(rows)
        out["row"] += list(rows)
        out["quantile"] += list(np.broadcast_to(quantile, len(rows)))

    for i, f in enumerate(features):
        t_rows = top.row[top_lo[i] : top_lo[i + 1]]
        emit(f, "top", t_rows, np.nan)
        used = set(docs[t_rows].tolist())
        r = slice(res_lo[i], res_lo[i + 1])
        q_rows, q = _quantile_sample(res.val[r], res.row[r], docs, used, cfg)
        emit(f, "quantile", q_rows, q)
        cand = rng.integers(0, len(docs), 4 * cfg.n_negative_random + 8)
        emit(f, "negative_random", _other_docs(cand, docs, used), np.nan)
        if len(t_rows) and cfg.n_negative_similar:
            ids, counts = np.unique(token_id[t_rows], return_counts=True)
            wanted = ids[np.argsort(-counts, kind="stable")[:3]]
            pool = _similar_pool(rows, wanted, rng)
            pool = rng.permutation(_other_docs(pool, docs, used))
            emit(f, "negative_similar", pool[: 10 * cfg.n_negative_similar], np.nan)
    return _Chosen(
        np.asarray(out["feature"], np.int64),
        np.asarray(out["kind"], object),
        np.asarray(out["row"], np.int64),
        np.asarray(out["quantile"], np.float64),
    )


def _similar_pool(
    rows: _Rows, wanted: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rows holding one of the `wanted` token ids: all of them, or a uniform
    draw of SIMILAR_POOL when there are more (a frequent token on a big corpus)."""
    lo = np.searchsorted(rows.sorted_tokens, wanted)
    hi = np.searchsorted(rows.sorted_tokens, wanted, side="right")
    total = int((hi - lo).sum())
    if total <= SIMILAR_POOL:
        return np.concatenate([rows.by_token[a:b] for a, b in zip(lo, hi, strict=True)])
    pick = np.sort(rng.choice(total, SIMILAR_POOL, replace=False))
    ends = np.cumsum(hi - lo)
    which = np.searchsorted(ends, pick, side="right")
    return rows.by_token[lo[which] + pick - (ends[which] - (hi - lo)[which])]


def _other_docs(rows: np.ndarray, docs: np.ndarray, used: set[int]) -> np.ndarray:
    """`rows` whose document is not in `used`."""
    return rows[~np.isin(docs[rows], list(used))] if used else rows


def _quantile_sample(
    val: np.ndarray, row: np.ndarray, docs: np.ndarray, used: set[int], cfg
) -> tuple[np.ndarray, np.ndarray]:
    """Per activation-quantile bin of the reservoir, up to `per_quantile` rows from
    documents not in `used` (one per document); returns rows and bin upper bounds."""
    if len(val) == 0 or cfg.per_quantile == 0:
        return np.empty(0, np.int64), np.empty(0)
    # Reservoir entries are in random-key order, so taking the first eligible
    # entries of a bin is a uniform draw from it.
    rank = np.argsort(np.argsort(val, kind="stable"), kind="stable")
    bins = rank * cfg.n_quantiles // len(val)
    rows, qs, taken = [], [], set(used)
    for b in range(cfg.n_quantiles):
        got = 0
        for r in row[bins == b]:
            d = int(docs[r])
            if d in taken:
                continue
            taken.add(d)
            rows.append(r)
            qs.append((b + 1) / cfg.n_quantiles)
            got += 1
            if got == cfg.per_quantile:
                break
    return np.asarray(rows, np.int64), np.asarray(qs)


class _Windows(NamedTuple):
    start: np.ndarray  # (E,) global first row of each window
    stop: np.ndarray  # (E,) one past the last row
    acts: list[np.ndarray]  # per example: feature activation per window token


def _windows(code: _Code, rows: _Rows, chosen: _Chosen, cfg: ExampleConfig) -> _Windows:
    """Each chosen example's window and its feature's activation on every token."""
    start = np.maximum(chosen.row - cfg.before, rows.seg_start[chosen.row])
    stop = np.minimum(chosen.row + cfg.after + 1, rows.seg_stop[chosen.row])
    length = stop - start
    ex = np.repeat(np.arange(len(start)), length)  # (T,) example of each token
    first = np.repeat(np.cumsum(length) - length, length)
    tok_row = start[ex] + np.arange(len(ex)) - first  # (T,) global row
    feat = chosen.feature[ex]
    values = np.zeros(len(ex), np.float32)
    order = np.argsort(tok_row, kind="stable")  # row order reads the memmap in order
    # ~4 M code entries a step: (step, k) gathers of idx and vals, not (1 M, k)
    # (2.6 GB of temporaries at k = 192).
    step = max(1, (1 << 22) // max(code.idx.shape[1], 1))
    for lo in range(0, len(order), step):
        sel = order[lo : lo + step]
        at = tok_row[sel]
        match = code.idx[at] == feat[sel, None]  # (n, k)
        values[sel] = (code.vals[at] * match).sum(1)
    return _Windows(start, stop, np.split(values, np.cumsum(length)[:-1]))


def _offsets(corpora: Sequence[Corpus]) -> np.ndarray:
    """[n_corpora] global row of each corpus' first row."""
    return np.cumsum([0] + [len(c.doc) for c in corpora])[:-1]


def collect_examples(
    sae: TopKSAE,
    corpora: Sequence[Corpus],
    tokenizer,
    cfg: ExampleConfig,
    seed: int,
) -> pd.DataFrame:
    """Examples of every feature of `sae` over `corpora`, one row per example
    (columns EXAMPLE_COLUMNS; see the module docstring)."""
    blocks = iter_examples(sae, corpora, tokenizer, cfg, seed)
    return pd.concat(list(blocks), ignore_index=True)


def iter_examples(
    sae: TopKSAE,
    corpora: Sequence[Corpus],
    tokenizer,
    cfg: ExampleConfig,
    seed: int,
    block: int = FEATURE_BLOCK,
) -> Iterator[pd.DataFrame]:
    """`collect_examples`' rows, `block` features at a time, in feature order."""
    m = sae.shape.n_latents
    rng = np.random.default_rng([seed, 2])
    with tempfile.TemporaryDirectory(prefix="saeflow-code-") as tmp:
        top, res, code = _scan(sae, corpora, cfg, seed, Path(tmp))
        rows = _stack_rows(corpora)
        decoded = _decoder(tokenizer, rows.token_id)
        for f0 in range(0, m, block):
            chosen = _choose(top, res, rows, cfg, range(f0, min(m, f0 + block)), rng)
            win = _windows(code, rows, chosen, cfg)
            keep = _keep_negatives(chosen, win, cfg)
            yield _table(chosen, win, keep, corpora, rows.token_id, decoded)
        del code


def _keep_negatives(chosen: _Chosen, win: _Windows, cfg: ExampleConfig) -> np.ndarray:
    """Mask of examples kept: all activating ones, and the first negatives per
    feature and kind whose whole window has zero activation."""
    zero = np.array([not a.any() for a in win.acts])
    keep = np.ones(len(chosen.row), bool)
    limit = {
        "negative_random": cfg.n_negative_random,
        "negative_similar": cfg.n_negative_similar,
    }
    for kind, n in limit.items():
        is_kind = chosen.kind == kind
        ok = np.flatnonzero(is_kind & zero)
        rank = _rank_in_group(chosen.feature[ok])
        keep[is_kind] = False
        keep[ok[rank < n]] = True
    return keep


def _table(
    chosen: _Chosen,
    win: _Windows,
    keep: np.ndarray,
    corpora: Sequence[Corpus],
    token_id: np.ndarray,
    decoded: dict[int, str],
) -> pd.DataFrame:
    e = np.flatnonzero(keep)
    offsets = _offsets(corpora)
    which = np.searchsorted(offsets, chosen.row[e], side="right") - 1
    local = chosen.row[e] - offsets[which]
    doc_id = np.empty(len(e), object)
    for i, c in enumerate(corpora):
        here = which == i
        doc_id[here] = c.doc_ids[c.doc[local[here]]]
    peak = chosen.row[e] - win.start[e]
    acts = [win.acts[i] for i in e]
    kind = chosen.kind[e]
    quantile = chosen.quantile[e]
    return pd.DataFrame(
        {
            "feature": chosen.feature[e],
            "kind": kind,
            "split": np.where(kind == "top", "explain", "score"),
            "corpus": np.asarray([c.name for c in corpora], object)[which],
            "doc_id": doc_id.astype(str),
            "row": local,
            "tokens": [
                [decoded[t] for t in token_id[a:b]]
                for a, b in zip(win.start[e], win.stop[e], strict=True)
            ],
            "acts": [a.astype(float).tolist() for a in acts],
            "peak": peak,
            "activation": [float(a[p]) for a, p in zip(acts, peak, strict=True)],
            "quantile": pd.array(
                np.where(np.isnan(quantile), None, quantile), dtype="Float64"
            ),
        },
        columns=EXAMPLE_COLUMNS,
    )


def _decoder(tok, token_id: np.ndarray) -> dict[int, str]:
    """Each token id used, decoded alone with the model's tokenizer."""
    ids = np.unique(token_id).tolist()
    return dict(zip(ids, tok.batch_decode([[i] for i in ids]), strict=True))


def make_examples(
    sae_dir: str | Path,
    acts: dict[str, str],
    model_ref: str,
    cfg: ExampleConfig,
    seed: int,
    device: str,
    out: str | Path,
) -> None:
    """Rule collect_feature_examples: examples of every feature of one SAE."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from saeflow.models.loading import load_tokenizer
    from saeflow.workflow.device import pick_device
    from saeflow.workflow.io import atomic_path

    sae = TopKSAE.load(sae_dir, pick_device(device))
    corpora = [open_corpus(name, path) for name, path in acts.items()]
    tok = load_tokenizer(model_ref)
    counts: dict[str, int] = {}
    with atomic_path(out) as tmp:
        writer = None
        for df in iter_examples(sae, corpora, tok, cfg, seed):
            if df.empty:  # a block of features that never fire
                continue
            for kind, n in df.groupby("kind").size().items():
                counts[kind] = counts.get(kind, 0) + int(n)
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table.cast(writer.schema))
        if writer is None:
            pd.DataFrame(columns=EXAMPLE_COLUMNS).to_parquet(tmp, index=False)
        else:
            writer.close()
    log.info("examples of %d features: %s", sae.shape.n_latents, counts)


def load_examples(path: str | Path, features: Sequence[int] | None = None):
    """Read an examples table, optionally only some features."""
    filters = [("feature", "in", list(features))] if features is not None else None
    df = pd.read_parquet(path, filters=filters)
    missing = set(EXAMPLE_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: examples table lacks columns {sorted(missing)}")
    return df
