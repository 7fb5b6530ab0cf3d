"""Tests for SAE training on synthetic activations with known sparse structure."""

import csv

import h5py
import numpy as np
import pytest
import torch

from saeflow.sae.data import ActivationSource
from saeflow.sae.trainer import CURVE_FIELDS, Trainer, dead_fraction, evaluate
from saeflow.workflow.config import SAEConfig

D, N_DIRECTIONS, K = 32, 64, 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def acts_path(tmp_path_factory):
    """20k tokens, each a positive mix of K of 64 unit directions in D=32."""
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((N_DIRECTIONS, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    n = 20_000
    idx = np.argsort(rng.random((n, N_DIRECTIONS)), axis=1)[:, :K]
    coef = rng.uniform(0.5, 2.0, (n, K))
    x = np.einsum("nk,nkd->nd", coef, dirs[idx]).astype(np.float32)
    path = tmp_path_factory.mktemp("acts") / "acts.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("acts", data=x, chunks=(1024, D))
    return path


def config(**overrides) -> SAEConfig:
    args = dict(
        expansion=4,
        k=K,
        epochs=2.0,
        batch_size=256,
        lr=1e-2,
        warmup_steps=10,
        log_every=10,
        shuffle_chunks=4,
        dead_after_tokens=2000,  # short enough that AuxK takes part
    )
    return SAEConfig(**(args | overrides))


def test_trainer_recovers_sparse_structure(acts_path, tmp_path):
    source = ActivationSource([acts_path], holdout_fraction=0.1)
    trainer = Trainer(source, config(), seed=0, device="cpu")

    result = trainer.fit(tmp_path / "curve.csv")

    assert result.eval.fvu < 0.3
    assert result.eval.l0 <= K
    assert result.eval.n_tokens == source.n_holdout == 2000
    assert result.steps == int(2 * source.n_train // 256)
    assert result.tokens_seen == result.steps * 256
    with open(tmp_path / "curve.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == CURVE_FIELDS
    assert int(rows[-1]["step"]) == result.steps
    assert float(rows[-1]["fvu"]) < float(rows[0]["fvu"])


def test_same_seed_gives_identical_weights(acts_path, tmp_path):
    def train(seed):
        source = ActivationSource([acts_path], holdout_fraction=0.1)
        trainer = Trainer(source, config(epochs=0.3), seed=seed, device="cpu")
        trainer.fit(tmp_path / f"curve_{seed}.csv")
        return trainer.sae.state_dict()

    first, again, other = train(1), train(1), train(2)

    for name, value in first.items():
        assert torch.equal(again[name], value), name
    assert not torch.equal(other["W_dec"], first["W_dec"])


def test_evaluate_matches_direct_computation(acts_path):
    source = ActivationSource([acts_path], holdout_fraction=0.1)
    sae = Trainer(source, config(), seed=0, device="cpu").sae

    result = evaluate(sae, source, batch_size=300)

    x = torch.cat(list(source.holdout_batches(10_000)))
    with torch.no_grad():
        code = sae.encode(x)
        recon = sae.decode(code)
    fvu = ((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    fired = torch.zeros(sae.shape.n_latents, dtype=torch.bool)
    fired[code.idx[code.vals > 0]] = True
    assert result.fvu == pytest.approx(fvu, rel=1e-4)
    assert result.l0 == pytest.approx((code.vals > 0).sum(1).float().mean().item())
    assert result.never_fired_fraction == pytest.approx(1 - fired.float().mean().item())
    assert result.n_tokens == len(x)


def test_dead_fraction_counts_latents_silent_on_every_training_token(acts_path):
    source = ActivationSource([acts_path], holdout_fraction=0.1)
    sae = Trainer(source, config(), seed=0, device="cpu").sae
    with torch.no_grad():
        sae.b_enc[:10] = -1e4  # these can never fire
    with h5py.File(acts_path) as f:
        x = torch.from_numpy(f["acts"][: source.n_train])
    with torch.no_grad():
        code = sae.encode(x)
    fired = torch.zeros(sae.shape.n_latents, dtype=torch.bool)
    fired[code.idx[code.vals > 0]] = True
    rng = np.random.default_rng(0)

    everything = dead_fraction(sae, source, 300, 10**9, rng, pool_chunks=4)
    one_token = dead_fraction(sae, source, 300, 1, rng, pool_chunks=4)

    assert source.n_train % 300 == 0  # no partial batch left out
    assert everything == pytest.approx(1 - fired.float().mean().item())
    assert everything >= 10 / sae.shape.n_latents
    assert one_token == pytest.approx(1 - K / sae.shape.n_latents)
