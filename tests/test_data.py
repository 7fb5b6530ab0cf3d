"""Tests for the chunked train / held-out reader of activation caches."""

import h5py
import numpy as np
import pytest
import torch

from saeflow.sae.data import ActivationSource, iter_rows


def write_acts(path, n: int, d: int = 4, chunk: int = 10, first_id: int = 0):
    """An activation file whose column 0 is a unique row id."""
    acts = np.zeros((n, d), np.float32)
    acts[:, 0] = np.arange(first_id, first_id + n)
    with h5py.File(path, "w") as f:
        f.create_dataset("acts", data=acts, chunks=(chunk, d))
    return path


@pytest.fixture
def two_files(tmp_path):
    return [
        write_acts(tmp_path / "a.h5", 95),
        write_acts(tmp_path / "b.h5", 57, first_id=1000),
    ]


def ids(batches) -> np.ndarray:
    return torch.cat(list(batches))[:, 0].numpy().astype(int)


def test_holdout_split_sizes(two_files):
    source = ActivationSource(two_files, holdout_fraction=0.2)

    assert source.d_model == 4
    assert source.n_train == 76 + 45
    assert source.n_holdout == 19 + 12
    assert all(s.stop - s.start <= 10 for s in source.train + source.holdout)


def test_train_epoch_yields_each_row_once_but_remainder(two_files):
    source = ActivationSource(two_files, holdout_fraction=0.2)
    train_ids = np.r_[np.arange(76), 1000 + np.arange(45)]

    batches = list(source.train_batches(16, np.random.default_rng(0), pool_chunks=3))

    assert all(b.shape == (16, 4) and b.dtype == torch.float32 for b in batches)
    seen = ids(batches)
    assert len(seen) == len(train_ids) // 16 * 16
    assert len(set(seen)) == len(seen)
    assert set(seen) <= set(train_ids)
    assert not np.array_equal(seen, np.sort(seen))  # shuffled


def test_train_batches_reproducible(two_files):
    source = ActivationSource(two_files, holdout_fraction=0.2)

    def epoch(seed):
        return ids(source.train_batches(8, np.random.default_rng(seed), pool_chunks=2))

    np.testing.assert_array_equal(epoch(3), epoch(3))
    assert not np.array_equal(epoch(3), epoch(4))


def test_holdout_batches_cover_the_tail(two_files):
    source = ActivationSource(two_files, holdout_fraction=0.2)

    batches = list(source.holdout_batches(7))

    assert max(len(b) for b in batches) <= 7
    np.testing.assert_array_equal(
        ids(batches), np.r_[np.arange(76, 95), 1000 + np.arange(45, 57)]
    )


def test_iter_rows_reads_everything_in_order(two_files):
    np.testing.assert_array_equal(
        ids(iter_rows(two_files, 13)), np.r_[np.arange(95), 1000 + np.arange(57)]
    )


def test_mismatched_widths_raise(tmp_path):
    paths = [
        write_acts(tmp_path / "a.h5", 50, d=4),
        write_acts(tmp_path / "b.h5", 50, d=6),
    ]

    with pytest.raises(ValueError, match="width"):
        ActivationSource(paths, holdout_fraction=0.2)


def test_too_few_rows_raise(tmp_path):
    with pytest.raises(ValueError, match="too few"):
        ActivationSource(
            [write_acts(tmp_path / "a.h5", 1, chunk=1)], holdout_fraction=0.5
        )
