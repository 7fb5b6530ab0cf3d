"""Read cached activations for SAE training and evaluation.

Random row indexing in HDF5 is slow (512 random rows ≈ 60 ms), so training reads
whole contiguous chunks in a random order, pools a few of them in memory and
shuffles rows there. Each file's last `holdout_fraction` of rows is held out for
evaluation; rows are in document order, so the held-out tail is mostly unseen
documents rather than neighbours of training tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch


class Span(NamedTuple):
    """A contiguous block of rows of one activation file."""

    file: int
    """Index into the source's files."""
    start: int
    """First row."""
    stop: int
    """One past the last row."""


class ActivationSource:
    """The train / held-out split of one or more activation caches of one layer."""

    def __init__(self, paths: Sequence[str | Path], holdout_fraction: float) -> None:
        self.paths = [Path(p) for p in paths]
        self.train: list[Span] = []
        self.holdout: list[Span] = []
        dims = set()
        for i, path in enumerate(self.paths):
            with h5py.File(path, "r") as f:
                acts = f["acts"]
                n, chunk = acts.shape[0], acts.chunks[0]
                dims.add(acts.shape[1])
            cut = int(n * (1.0 - holdout_fraction))
            self.train += [
                Span(i, s, min(s + chunk, cut)) for s in range(0, cut, chunk)
            ]
            self.holdout += [
                Span(i, s, min(s + chunk, n)) for s in range(cut, n, chunk)
            ]
        if len(dims) != 1:
            raise ValueError(
                f"activation files disagree on width: {dims} in {self.paths}"
            )
        self.d_model = dims.pop()
        self.n_train = sum(s.stop - s.start for s in self.train)
        self.n_holdout = sum(s.stop - s.start for s in self.holdout)
        if self.n_train == 0 or self.n_holdout == 0:
            raise ValueError(
                f"too few cached tokens to train and hold out ({self.n_train} train, "
                f"{self.n_holdout} held out) in {[str(p) for p in self.paths]}"
            )

    def _read(self, spans: Sequence[Span]) -> np.ndarray:
        parts = []
        for file in sorted({s.file for s in spans}):
            with h5py.File(self.paths[file], "r") as f:
                acts = f["acts"]
                parts += [acts[s.start : s.stop] for s in spans if s.file == file]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def train_batches(
        self,
        batch_size: int,
        rng: np.random.Generator,
        pool_chunks: int,
        skip: int = 0,
    ) -> Iterator[torch.Tensor]:
        """One epoch of shuffled [batch_size, D] float32 batches (last one dropped).

        An epoch has `n_train // batch_size` batches. `skip` drops that many from
        the start (resuming mid-epoch): the order depends on `rng` alone, so the
        rest equals an uninterrupted epoch's. Skipped pools are still read,
        because rows left over from one pool are shuffled into the next.
        """
        order = rng.permutation(len(self.train))
        leftover = np.empty((0, self.d_model), np.float32)
        done = 0
        for start in range(0, len(order), pool_chunks):
            pool = self._read(
                [self.train[i] for i in order[start : start + pool_chunks]]
            )
            pool = np.concatenate([leftover, pool])
            pool = pool[rng.permutation(len(pool))]
            n_full = len(pool) // batch_size * batch_size
            for b in range(0, n_full, batch_size):
                if done >= skip:
                    yield torch.from_numpy(pool[b : b + batch_size])
                done += 1
            leftover = pool[n_full:]

    def holdout_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The held-out rows in file order, in [≤ batch_size, D] float32 batches."""
        yield from iter_rows(self.paths, batch_size, self.holdout)

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """About n training rows from randomly chosen chunks (for initialisation)."""
        chosen, total = [], 0
        for i in rng.permutation(len(self.train)):
            chosen.append(self.train[i])
            total += chosen[-1].stop - chosen[-1].start
            if total >= n:
                break
        return torch.from_numpy(self._read(chosen)[:n])


def iter_rows(
    paths: Sequence[str | Path], batch_size: int, spans: Sequence[Span] | None = None
) -> Iterator[torch.Tensor]:
    """Stream rows of activation files (all rows, or the given spans) in order."""
    for i, path in enumerate(paths):
        with h5py.File(path, "r") as f:
            acts = f["acts"]
            ranges = [(s.start, s.stop) for s in spans or [] if s.file == i]
            if spans is None:
                ranges = [(0, acts.shape[0])]
            for lo, hi in ranges:
                for b in range(lo, hi, batch_size):
                    rows = acts[b : min(b + batch_size, hi)]
                    yield torch.from_numpy(rows.astype(np.float32, copy=False))
