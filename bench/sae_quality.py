"""Held-out FVU at an equal token budget: saeflow's trainer vs EleutherAI sparsify.

Data (either or both):

* ``synthetic``: tokens that are sparse non-negative mixes of known unit directions
  (k of ``--n-dirs`` per token, Zipf-like frequencies, log-normal magnitudes,
  small Gaussian noise), written to a temporary HDF5 cache;
* ``caches``: the default run's activation caches,
  ``<root>/activations/{model}/layer_{L}/{domain,general}.h5`` (read only).

Methods, each on the same batches in the same order (saeflow's shuffled reader)
and scored on the same held-out tokens:

* ``ours``: `saeflow.sae.trainer.Trainer` with the given config (default: schedule-free
  sign-SGD) on the optimized kernels path;
* ``ours-ref``: the same with ``SAEFLOW_DISABLE_TRITON=1`` (torch references);
* ``ours-adam``: Adam at lr 2e-4 / sqrt(M / 2^14) (the spine's former default);
* ``ours-fast-fp32``: ``ours`` at ``sae.precision: fast-fp32`` (bf16 products in
  the matmuls on a CPU with AMX or AVX512-BF16);
* ``sparsify``: ``sparsify.SparseCoder`` trained as its Trainer does by default
  (``ScheduleFreeWrapper(SignSGD)``, lr 5e-3 / sqrt(M / 2^14), momentum 0.95,
  decoder renormalised before each step, b_dec set to the first batch's mean, no
  AuxK), if ``eai-sparsify`` is installed (a benchmark-only dependency).

Each line gives the held-out FVU; "dead", the latents of the trained SAE that
fire on none of the training tokens; and "never fired on held-out", those silent
on every held-out token (higher: the held-out tail lacks some training topics).

    python bench/sae_quality.py synthetic --tokens 200000 --expansion 32
    python bench/sae_quality.py caches --root results --epochs 4
    python bench/sae_quality.py synthetic --d 768 --expansion 32 --k 192 \
        --tokens 102400 --methods ours sparsify  # the seeds' shape
    # the same with freed memory kept mapped for the whole process (allocator.py)
    python bench/sae_quality.py synthetic ... --keep-freed-memory
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from allocator import keep_freed_memory

from saeflow.sae.data import ActivationSource
from saeflow.sae.trainer import (
    Trainer,
    TrainingRun,
    _epoch_rng,
    dead_fraction,
    evaluate,
)
from saeflow.workflow.config import SAEConfig


def synthetic_cache(path: Path, n: int, d: int, n_dirs: int, k: int, seed: int) -> None:
    """Write n tokens of k-sparse mixes of n_dirs unit directions in R^d."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_dirs, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    cdf = torch.cumsum(1.0 / torch.arange(1, n_dirs + 1) ** 0.5, 0)
    cdf /= cdf[-1].clone()
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 16_384):
        m = min(16_384, n - s)
        idx = torch.searchsorted(cdf, torch.rand(m, k, generator=g)).clamp_max(
            n_dirs - 1
        )
        coef = torch.exp(0.5 * torch.randn(m, k, generator=g))
        noise = 0.05 * torch.randn(m, d, generator=g)
        x[s : s + m] = (torch.einsum("nk,nkd->nd", coef, dirs[idx]) + noise).numpy()
    with h5py.File(path, "w") as f:
        f.create_dataset("acts", data=x, chunks=(4096, d))


def run_ours(source: ActivationSource, cfg: SAEConfig, reference: bool) -> dict:
    os.environ["SAEFLOW_DISABLE_TRITON"] = "1" if reference else "0"
    trainer = Trainer(source, cfg, seed=0, device="cpu")
    result = TrainingRun(source, {"ours": trainer}, cfg, seed=0).run()["ours"]
    os.environ["SAEFLOW_DISABLE_TRITON"] = "0"
    return {
        "fvu": result.eval.fvu,
        "never_fired": result.eval.never_fired_fraction,
        "dead": result.dead_fraction,
        "tokens_per_s": result.tokens_per_s,
    }


def run_sparsify(source: ActivationSource, cfg: SAEConfig) -> dict | None:
    """sparsify's default training on the same batches; None if not installed."""
    os.environ["SPARSIFY_DISABLE_TRITON"] = "1"  # its Triton decoder needs a GPU
    try:
        from schedulefree import ScheduleFreeWrapper
        from sparsify import SparseCoder, SparseCoderConfig
        from sparsify.sign_sgd import SignSGD
    except ImportError:
        return None
    torch.manual_seed(0)
    m = cfg.expansion * source.d_model
    sae = SparseCoder(source.d_model, SparseCoderConfig(num_latents=m, k=cfg.k), "cpu")
    lr = 5e-3 / (m / 2**14) ** 0.5
    opt = ScheduleFreeWrapper(
        SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95
    )
    opt.train()
    steps = max(1, int(cfg.epochs * source.n_train // cfg.batch_size))
    seconds, step, epoch = 0.0, 0, 0
    while step < steps:
        rng = _epoch_rng(0, epoch)
        for x in source.train_batches(cfg.batch_size, rng, cfg.shuffle_chunks):
            if step == steps:
                break
            t0 = time.perf_counter()
            if step == 0:
                sae.b_dec.data = x.mean(0)
            sae.set_decoder_norm_to_unit_norm()
            sae(x).fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            seconds += time.perf_counter() - t0
            step += 1
        epoch += 1
    opt.eval()
    adapter = _SparsifyAdapter(sae)
    ev = evaluate(adapter, source, cfg.batch_size * 4)
    dead = dead_fraction(
        adapter,
        source,
        cfg.batch_size * 4,
        cfg.dead_eval_tokens,
        _epoch_rng(0, 0),
        cfg.shuffle_chunks,
    )
    return {
        "fvu": ev.fvu,
        "never_fired": ev.never_fired_fraction,
        "dead": dead,
        "tokens_per_s": steps * cfg.batch_size / seconds,
    }


class _SparsifyAdapter(torch.nn.Module):
    """sparsify's SparseCoder behind saeflow's encode/decode interface."""

    def __init__(self, sae) -> None:
        super().__init__()
        self.inner = sae
        self.W_dec = sae.W_dec
        self.shape = argparse.Namespace(n_latents=sae.num_latents)

    def encode(self, x):
        out = self.inner.encode(x)
        return argparse.Namespace(vals=out.top_acts, idx=out.top_indices)

    def decode(self, code):
        return self.inner.decode(code.vals, code.idx)


def compare(label: str, source: ActivationSource, cfg: SAEConfig, methods) -> None:
    runs = {
        "ours": lambda: run_ours(source, cfg, reference=False),
        "ours-ref": lambda: run_ours(source, cfg, reference=True),
        "ours-adam": lambda: run_ours(
            source, SAEConfig(**(cfg.to_dict() | {"optimizer": "adam"})), False
        ),
        "ours-fast-fp32": lambda: run_ours(
            source, SAEConfig(**(cfg.to_dict() | {"precision": "fast-fp32"})), False
        ),
        "sparsify": lambda: run_sparsify(source, cfg),
    }
    tokens = int(cfg.epochs * source.n_train // cfg.batch_size) * cfg.batch_size
    print(
        f"\n{label}: D={source.d_model} M={cfg.expansion * source.d_model} "
        f"k={cfg.k}, {tokens} training tokens, {source.n_holdout} held out"
    )
    results = {}
    for name in methods:
        r = runs[name]()
        if r is None:
            print(f"  {name:10s} not installed; skipped")
            continue
        results[name] = r
        print(
            f"  {name:10s} FVU {r['fvu']:.4f}  dead {r['dead']:.2%}  "
            f"never fired on held-out {r['never_fired']:.2%}  "
            f"{r['tokens_per_s']:,.0f} tokens/s",
            flush=True,
        )
    if "ours" in results and "ours-ref" in results:
        rel = results["ours"]["fvu"] / results["ours-ref"]["fvu"] - 1
        print(f"  optimized vs reference FVU: {rel:+.2%}")
    if "ours" in results and "ours-fast-fp32" in results:
        fast, exact = results["ours-fast-fp32"], results["ours"]
        print(
            f"  fast-fp32 vs fp32: FVU {fast['fvu'] / exact['fvu'] - 1:+.2%}, "
            f"tokens/s {fast['tokens_per_s'] / exact['tokens_per_s']:.2f}x"
        )
    if "ours" in results and "sparsify" in results:
        ratio = results["ours"]["fvu"] / results["sparsify"]["fvu"]
        speed = results["ours"]["tokens_per_s"] / results["sparsify"]["tokens_per_s"]
        print(f"  ours / sparsify: FVU {ratio:.3f}x, tokens/s {speed:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", choices=["synthetic", "caches"])
    p.add_argument(
        "--methods", nargs="+", default=["ours", "ours-ref", "ours-adam", "sparsify"]
    )
    p.add_argument(
        "--tokens", type=int, default=200_000, help="synthetic training tokens"
    )
    p.add_argument("--d", type=int, default=384, help="synthetic width")
    p.add_argument("--n-dirs", type=int, default=8192, help="synthetic true directions")
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument(
        "--epochs", type=float, default=None, help="default: 1 synthetic, 4 caches"
    )
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--root", default="results", help="caches: results folder")
    p.add_argument("--models", nargs="+", default=["base", "finetuned"])
    p.add_argument("--layers", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dead-after", type=int, default=SAEConfig.dead_after_tokens)
    p.add_argument("--warmup", type=int, default=SAEConfig.warmup_steps)
    p.add_argument("--aux-coef", type=float, default=SAEConfig.aux_coef)
    p.add_argument("--aux-k", type=int, default=SAEConfig.aux_k, help="default D / 2")
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="keep freed memory mapped in this process (allocator.py)",
    )
    args = p.parse_args()
    if args.keep_freed_memory:
        print(f"freed memory kept mapped (glibc took it: {keep_freed_memory()})")
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (1.0 if args.data == "synthetic" else 4.0)
    cfg = SAEConfig(
        expansion=args.expansion,
        k=args.k,
        epochs=epochs,
        batch_size=args.batch_size,
        checkpoint_every=0,
        dead_after_tokens=args.dead_after,
        warmup_steps=args.warmup,
        aux_coef=args.aux_coef,
        aux_k=args.aux_k,
    )
    if args.data == "synthetic":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "synthetic.h5"
            n = int(args.tokens / 0.9) + 1  # holdout_fraction 0.1
            synthetic_cache(path, n, args.d, args.n_dirs, args.k, seed=0)
            compare("synthetic", ActivationSource([path], 0.1), cfg, args.methods)
        return
    for model in args.models:
        for layer in args.layers:
            folder = Path(args.root) / "activations" / model / f"layer_{layer}"
            source = ActivationSource(
                [folder / "domain.h5", folder / "general.h5"], cfg.holdout_fraction
            )
            compare(f"{model} layer {layer}", source, cfg, args.methods)


if __name__ == "__main__":
    main()
