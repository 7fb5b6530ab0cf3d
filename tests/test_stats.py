"""Tests for streaming per-feature statistics against a dense computation."""

import h5py
import numpy as np
import pytest
import torch

from saeflow.features.stats import STAT_COLUMNS, feature_stats, feature_stats_of_file
from saeflow.sae.model import SAEShape, TopKSAE

SHAPE = SAEShape(d_in=8, n_latents=24, k=3)


@pytest.fixture
def sae() -> TopKSAE:
    sae = TopKSAE(SHAPE, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(-1.5)  # some top-k values are 0: active != selected
        sae.b_enc[5] = -1e3  # never fires
    return sae


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(50, SHAPE.d_in, generator=torch.Generator().manual_seed(0))


def dense_stats(sae: TopKSAE, x: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        code = sae.encode(x)
    dense = (
        torch.zeros(len(x), SHAPE.n_latents).scatter(1, code.idx, code.vals).double()
    )
    count = (dense > 0).sum(0)
    return {
        "mean_activation": dense.mean(0).numpy(),
        "max_activation": dense.max(0).values.numpy(),
        "frac_active": (count / len(x)).numpy(),
        "mean_when_active": (dense.sum(0) / count.clamp_min(1)).numpy(),
    }


def test_feature_stats_equal_dense_computation(sae, x):
    stats = feature_stats(sae, x.split(7))

    assert list(stats.columns) == STAT_COLUMNS
    assert stats["feature"].tolist() == list(range(SHAPE.n_latents))
    assert (stats["n_tokens"] == len(x)).all()
    expected = dense_stats(sae, x)
    assert expected["frac_active"][5] == 0 and expected["frac_active"].sum() < SHAPE.k
    for column, values in expected.items():
        np.testing.assert_allclose(
            stats[column], values, rtol=1e-5, atol=1e-7, err_msg=column
        )


def test_feature_stats_of_file_reads_every_row(sae, x, tmp_path):
    with h5py.File(tmp_path / "acts.h5", "w") as f:
        f.create_dataset(
            "acts", data=x.numpy().astype(np.float16), chunks=(16, SHAPE.d_in)
        )
    x16 = x.half().float()

    stats = feature_stats_of_file(sae, tmp_path / "acts.h5", batch_size=9)

    expected = feature_stats(sae, [x16])
    np.testing.assert_allclose(
        stats["mean_activation"], expected["mean_activation"], rtol=1e-6
    )
    assert stats["n_tokens"].iloc[0] == len(x)


def test_feature_stats_without_tokens_raise(sae):
    with pytest.raises(ValueError, match="no tokens"):
        feature_stats(sae, [])
