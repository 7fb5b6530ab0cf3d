"""Tests for the scaled-up SAE trainer: kernels vs reference, SAE kinds side by
side, SIGKILL-and-resume, and 2-process data parallelism (gloo)."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from saeflow.sae.data import ActivationSource
from saeflow.sae.model import TopKSAE
from saeflow.sae.optimizer import SignScheduleFree
from saeflow.sae.train_job import make_saes
from saeflow.sae.trainer import Trainer, fast_fp32_matmuls
from saeflow.workflow.config import SAEConfig

D, N_DIRECTIONS, K = 16, 48, 4
ROOT = Path(__file__).resolve().parents[1]


def _mixes(path: Path, d: int) -> Path:
    """12k tokens, each a positive mix of K of 48 unit directions in R^d."""
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((N_DIRECTIONS, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    n = 12_000
    idx = np.argsort(rng.random((n, N_DIRECTIONS)), axis=1)[:, :K]
    coef = rng.uniform(0.5, 2.0, (n, K))
    x = np.einsum("nk,nkd->nd", coef, dirs[idx]) + 0.3
    with h5py.File(path, "w") as f:
        f.create_dataset("acts", data=x.astype(np.float16), chunks=(512, d))
    return path


@pytest.fixture(scope="module")
def acts_path(tmp_path_factory):
    return _mixes(tmp_path_factory.mktemp("acts") / "acts.h5", D)


def config(**overrides) -> SAEConfig:
    args = dict(
        expansion=4,
        k=K,
        epochs=2.0,
        batch_size=256,
        warmup_steps=10,
        log_every=10,
        shuffle_chunks=4,
        dead_after_tokens=2000,
        checkpoint_every=0,
    )
    return SAEConfig(**(args | overrides))


def job_args(acts, out: Path, cfg: SAEConfig, n_procs: int = 1) -> dict:
    return dict(
        acts=[str(acts)],
        cfg=cfg,
        seed=0,
        device="cpu",
        out_dir=out / "sae",
        metrics=out / "metrics.json",
        curve=out / "training_curve.csv",
        figure=out / "training_curve.png",
        variants_dir=out / "variants",
        title="test",
        n_procs=n_procs,
    )


def test_optimized_path_fvu_within_2_percent_of_reference(
    acts_path, monkeypatch, tmp_path
):
    def held_out_fvu(disable_triton: bool) -> float:
        monkeypatch.setenv("SAEFLOW_DISABLE_TRITON", "1" if disable_triton else "0")
        source = ActivationSource([acts_path], holdout_fraction=0.1)
        trainer = Trainer(source, config(), seed=0, device="cpu")
        # A real file: the curve is written atomically (temp file, then rename),
        # which as root would replace /dev/null itself.
        return trainer.fit(tmp_path / "curve.csv").eval.fvu

    fast, ref = held_out_fvu(False), held_out_fvu(True)

    assert fast < 0.2
    assert abs(fast - ref) / ref < 0.02


def _fit_at(acts, precision: str, tmp_path) -> tuple[Trainer, float]:
    """A trainer fitted on `acts` at `precision`, and its held-out FVU."""
    source = ActivationSource([acts], holdout_fraction=0.1)
    trainer = Trainer(source, config(precision=precision), seed=0, device="cpu")
    return trainer, trainer.fit(tmp_path / f"curve_{precision}.csv").eval.fvu


def test_bf16_autocast_trains_as_well_as_fp32(acts_path, tmp_path):
    """precision: bf16 (what `auto` picks on CUDA), here on the CPU."""
    trainer, bf16 = _fit_at(acts_path, "bf16", tmp_path)
    _, fp32 = _fit_at(acts_path, "fp32", tmp_path)

    assert trainer.autocast_dtype == torch.bfloat16
    assert trainer.sae.W_enc.dtype == torch.float32  # master weights stay fp32
    assert bf16 < 0.2
    assert abs(bf16 - fp32) / fp32 < 0.05  # measured: 0.1844 vs 0.1823


def test_fast_fp32_rounds_products_only_inside():
    """fast-fp32 changes fp32 matmuls (bf16 products on the CPU) and only
    inside the context."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 256, generator=g), torch.randn(256, 64, generator=g)
    exact = a.double() @ b.double()
    with fast_fp32_matmuls("cpu"):
        fast = a @ b
    err_fast = ((fast.double() - exact).abs().max() / exact.abs().max()).item()
    err_fp32 = ((a @ b - exact).abs().max() / exact.abs().max()).item()
    assert err_fp32 < 1e-5 < err_fast < 1e-2


def test_fast_fp32_trains_as_well_as_fp32(tmp_path):
    # D = 64: oneDNN leaves matmuls with an inner dimension of 16 in fp32.
    acts = _mixes(tmp_path / "acts64.h5", 64)
    trainer, fast = _fit_at(acts, "fast-fp32", tmp_path)
    exact, fp32 = _fit_at(acts, "fp32", tmp_path)

    assert trainer.precision == "fast-fp32"
    assert trainer.sae.W_enc.dtype == torch.float32
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    with trainer._autocast():  # what train_step runs the forward in
        fast_recon = trainer.sae(x).recon
    assert not torch.equal(fast_recon, trainer.sae(x).recon)  # products rounded
    assert abs(fast - fp32) < 0.003  # measured: 0.0222 vs 0.0213


@pytest.mark.slow
def test_kinds_train_side_by_side(acts_path, tmp_path):
    variants = [
        {"name": "batch", "kind": "batchtopk"},
        {"name": "l1", "kind": "relu", "l1_coef": 0.02, "expansion": 2},
        {"name": "adam", "optimizer": "adam", "lr": 1e-2},
    ]

    make_saes(**job_args(acts_path, tmp_path, config(variants=variants)))

    metrics = {"default": json.loads((tmp_path / "metrics.json").read_text())}
    for v in variants:
        folder = tmp_path / "variants" / v["name"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "metrics.json",
            "sae",
            "training_curve.csv",
            "training_curve.png",
        ]
        metrics[v["name"]] = json.loads((folder / "metrics.json").read_text())
    assert not (tmp_path / "checkpoint").exists()
    assert metrics["l1"]["n_latents"] == 2 * D and metrics["l1"]["kind"] == "relu"
    assert metrics["default"]["eval"]["l0"] <= K
    assert K / 2 < metrics["batch"]["eval"]["l0"] < 2 * K
    for name, m in metrics.items():
        assert m["eval"]["fvu"] < 0.35, name
        assert m["tokens_seen"] == metrics["default"]["tokens_seen"]
    # Saved decoders have unit rows, whichever optimizer trained them.
    for folder in [tmp_path / "sae", *(tmp_path / "variants").glob("*/sae")]:
        norms = TopKSAE.load(folder).W_dec.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.slow
def test_sigkill_then_restart_ends_with_uninterrupted_weights(acts_path, tmp_path):
    cfg = config(epochs=3.0, checkpoint_every=5, optimizer="adam", lr=1e-2)

    def command(out: Path) -> list[str]:
        args = job_args(acts_path, out, cfg) | {"cfg": cfg.to_dict()}
        (tmp_path / f"{out.name}.json").write_text(json.dumps(args, default=str))
        code = (
            "import sys, torch; torch.set_num_threads(1); "
            "from saeflow.sae.train_job import main; main(sys.argv[1:])"
        )
        return [sys.executable, "-c", code, str(tmp_path / f"{out.name}.json")]

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run(command(tmp_path / "whole"), check=True, env=env, cwd=ROOT)
    killed = subprocess.Popen(command(tmp_path / "killed"), env=env, cwd=ROOT)
    state = tmp_path / "killed" / "checkpoint" / "state.pt"
    while not state.exists() and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "metrics.json").exists()
    subprocess.run(command(tmp_path / "killed"), check=True, env=env, cwd=ROOT)

    whole = load_file(tmp_path / "whole" / "sae" / "sae.safetensors")
    resumed = load_file(tmp_path / "killed" / "sae" / "sae.safetensors")
    for name, value in whole.items():
        assert torch.equal(resumed[name], value), name
    curves = [
        pd.read_csv(tmp_path / run / "training_curve.csv")
        for run in ("whole", "killed")
    ]
    cols = ["step", "loss", "fvu", "l0", "dead_fraction"]
    pd.testing.assert_frame_equal(curves[1][cols], curves[0][cols])


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(acts_path, tmp_path):
    """Tolerance: Adam weights within 1e-4 (summation order differs across ranks)."""
    cfg = config(epochs=1.0, optimizer="adam", lr=1e-2)

    make_saes(**job_args(acts_path, tmp_path / "one", cfg))
    make_saes(**job_args(acts_path, tmp_path / "two", cfg, n_procs=2))

    one = load_file(tmp_path / "one" / "sae" / "sae.safetensors")
    two = load_file(tmp_path / "two" / "sae" / "sae.safetensors")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-4, rtol=1e-4)
    assert (
        json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
    )


def test_schedule_free_projects_z_after_x_took_it_in():
    """A constrained parameter: z steps and is projected, x averages the
    unprojected z, the parameter is lerp(x, z, 1 - momentum); written out by
    hand, bit for bit."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(6, 4))

    def unit_rows(t: torch.Tensor) -> None:
        t.div_(t.norm(dim=1, keepdim=True))

    opt = SignScheduleFree([w], lr=0.1, constraints={w: unit_rows})
    z, x, weight_sum = w.detach().clone(), w.detach().clone(), 0.0
    for _ in range(3):
        grad = torch.randn(6, 4)
        w.grad = grad.clone()
        opt.step()
        z -= 0.1 * grad.sign()
        weight_sum += 0.1**2
        x.lerp_(z, 0.1**2 / weight_sum)
        unit_rows(z)
        assert torch.equal(opt.state[w]["z"], z)
        assert torch.equal(opt.state[w]["x"], x)
        assert torch.equal(w.detach(), torch.lerp(x, z, 1 - 0.95))
    assert not torch.allclose(x.norm(dim=1), torch.ones(6)), "x is not projected"


def test_schedule_free_state_round_trips_bitwise():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    opt = SignScheduleFree([w], lr=0.1, warmup_steps=3)
    for _ in range(4):
        w.grad = torch.randn(5, 3)
        opt.step()
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = SignScheduleFree([w2], lr=0.1, warmup_steps=3)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if saved and loaded

    grad = torch.randn(5, 3)
    w.grad, w2.grad = grad, grad.clone()
    opt.step()
    opt2.step()

    assert torch.equal(w, w2)
    assert torch.equal(opt.state[w]["x"], opt2.state[w2]["x"])
    assert not torch.equal(w, opt.state[w]["x"])  # y, not the average
