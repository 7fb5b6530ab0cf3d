"""Tokens/s of one full top-k SAE training step, per implementation.

A step is: encode ``x - b_dec``, decode, MSE loss, backward, Adam step. Compared
in one process on the same random data and the same initial weights:

* ``torch dense``: dense encoder + ``torch.topk``, ``embedding_bag`` decoder,
  autograd through the dense pre-activation (``*_ref`` in ``kernels``);
* ``ours``: what ``kernels.topk_encode``/``sparse_decode`` dispatch to (the CPU
  fast path on CPU tensors; on CUDA a cuBLAS GEMM + top-k forward and the Triton
  kernels for the rest), and on CUDA also with the fused Triton encoder;
* ``sparsify``: EleutherAI's ``SparseCoder`` (its eager path off the GPU), if
  ``eai-sparsify`` is installed (a benchmark-only dependency).

Each runs at ``--precision`` fp32 and fast-fp32 (``sae.precision: fast-fp32``:
fp32 tensors, matmul products in TF32 on CUDA and bf16 on a CPU with AMX or
AVX512-BF16), and on CUDA also bf16 (autocast, what ``sae.precision: auto``
trains in there); every implementation under the same setting. Also printed: the
matmul rate (4096^2, fp32 tensors) at that precision measured in the same run,
and the fraction of each step the unavoidable encoder FLOPs (2 * N * D * M)
would take at that rate. On CPU the implementations run interleaved, one step
each per round, and the median of the rounds is reported (the machine is
shared); on CUDA each is timed with ``triton.testing.do_bench`` and its peak
memory beyond what was allocated before the step is printed too.

``--keep-freed-memory`` tells glibc to keep freed memory mapped for the whole
process (``allocator.py``), which spares every implementation the page faults of
its large tensors; without it, the process default.

    python bench/sae_train.py --steps 10
    python bench/sae_train.py --steps 10 --keep-freed-memory
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from allocator import keep_freed_memory

from kernels import sparse_decode, topk_encode, topk_encode_triton
from kernels.sparse_decode import sparse_decode_ref
from kernels.topk_encode import topk_encode_ref
from saeflow.sae.trainer import fast_fp32_matmuls

Step = Callable[[], None]


@dataclass(frozen=True)
class Shape:
    """One benchmark configuration."""

    N: int
    """Tokens per step."""
    D: int
    """Activation width."""
    M: int
    """Latents."""
    k: int
    """Active latents per token."""

    @property
    def floor_flops(self) -> float:
        """The dense encoder forward, which no implementation can skip."""
        return 2.0 * self.N * self.D * self.M


SHAPES = [Shape(4096, 384, 12288, 32), Shape(1024, 768, 24576, 192)]


def _adam(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    # fused Adam is several times faster than foreach on CPU; same for everyone.
    return torch.optim.Adam(params, lr=1e-4, fused=True)


def _init(s: Shape, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(s.M, s.D, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    weights = {
        "W_enc": W_dec.clone(),
        "b_enc": torch.zeros(s.M),
        "W_dec": W_dec,
        "b_dec": torch.zeros(s.D),
    }
    return {name: t.to(device) for name, t in weights.items()}


def _to_autocast_dtype(t: torch.Tensor) -> torch.Tensor:
    device = t.device.type
    if torch.is_autocast_enabled(device):
        return t.to(torch.get_autocast_dtype(device))
    return t


def kernel_step(encode: Callable, decode: Callable, s: Shape, x: torch.Tensor) -> Step:
    """A training step built from an (encode, decode) pair of our API."""
    p = {n: t.requires_grad_() for n, t in _init(s, x.device).items()}
    opt = _adam(list(p.values()))

    def step() -> None:
        # Under bf16 autocast the kernels get bf16 casts of the fp32 masters, as
        # in TopKSAE (autocast does not cast custom autograd Functions).
        c = {n: _to_autocast_dtype(t) for n, t in p.items()}
        vals, idx = encode(x, c["W_enc"], c["b_enc"], s.k, p["b_dec"])
        F.mse_loss(decode(vals, idx, c["W_dec"], c["b_dec"]).float(), x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sparsify_step(s: Shape, x: torch.Tensor) -> Step | None:
    """A training step of EleutherAI sparsify's SparseCoder, or None if absent."""
    if x.device.type != "cuda":
        # Its Triton decoder needs a GPU; this selects its eager CPU path.
        os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except ImportError as err:
        print(f"  sparsify: not importable ({err}); skipped")
        return None
    sae = SparseCoder(s.D, SparseCoderConfig(num_latents=s.M, k=s.k), x.device)
    init = _init(s, x.device)
    with torch.no_grad():
        sae.encoder.weight.copy_(init["W_enc"])
        sae.encoder.bias.copy_(init["b_enc"])
        sae.W_dec.copy_(init["W_dec"])
        sae.b_dec.copy_(init["b_dec"])
    opt = _adam(list(sae.parameters()))

    def step() -> None:
        sae(x).fvu.backward()  # fvu = MSE / variance: its own training loss
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def matmul_step(device: torch.device) -> tuple[Step, float]:
    """A 4096^2 fp32 matmul and its FLOP count, to calibrate the machine."""
    a = torch.randn(4096, 4096, device=device)
    b = torch.randn(4096, 4096, device=device)
    return (lambda: torch.mm(a, b)), 2.0 * 4096**3


def time_cpu(steps: dict[str, Step], rounds: int) -> dict[str, float]:
    """Median seconds per call, calls interleaved one per name per round."""
    for step in steps.values():  # warm-up: allocations, first-call dispatch
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def time_cuda(steps: dict[str, Step], rounds: int) -> dict[str, float]:
    """Median seconds per call with triton's do_bench (CUDA events, L2 flushed)."""
    from triton.testing import do_bench

    seconds = {}
    for name, step in steps.items():
        try:
            seconds[name] = (
                do_bench(step, rep=max(100, 10 * rounds), return_mode="median") / 1e3
            )
        except NotImplementedError as err:  # embedding_bag's bf16 backward on CUDA
            print(f"  {name}: skipped ({err})")
    return seconds


def peak_memory_cuda(steps: dict[str, Step]) -> dict[str, int]:
    """Bytes each step allocates at its peak beyond what was live before it."""
    peaks = {}
    for name, step in steps.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        live = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - live
    return peaks


def _precision(precision: str, device: str) -> contextlib.AbstractContextManager:
    if precision == "fast-fp32":
        return fast_fp32_matmuls(device)
    if precision == "bf16":
        return torch.autocast(device, torch.bfloat16)
    return contextlib.nullcontext()


def bench_shape(s: Shape, device: torch.device, rounds: int, precision: str) -> None:
    print(f"N={s.N} D={s.D} M={s.M} k={s.k} on {device}, {precision}")
    x = torch.randn(s.N, s.D, generator=torch.Generator().manual_seed(1)).to(device)
    ours = "ours (cuBLAS + triton)" if device.type == "cuda" else "ours (cpu fast path)"
    steps: dict[str, Step] = {
        "torch dense": kernel_step(topk_encode_ref, sparse_decode_ref, s, x),
        ours: kernel_step(topk_encode, sparse_decode, s, x),
    }
    if device.type == "cuda":
        steps["ours, fused triton enc."] = kernel_step(
            topk_encode_triton, sparse_decode, s, x
        )
    if (spy := sparsify_step(s, x)) is not None:
        steps["sparsify"] = spy
    matmul, matmul_flops = matmul_step(device)
    steps["fp32 matmul 4096^2"] = matmul
    timer = time_cuda if device.type == "cuda" else time_cpu
    with _precision(precision, device.type):
        seconds = timer(steps, rounds)
        timed = {name: steps[name] for name in seconds}
        peaks = peak_memory_cuda(timed) if device.type == "cuda" else {}
    gflops = matmul_flops / seconds.pop("fp32 matmul 4096^2") / 1e9
    print(f"  matmul at {precision}: {gflops:.0f} GFLOP/s")
    floor_s = s.floor_flops / (gflops * 1e9)
    for name, sec in seconds.items():
        print(
            f"  {name:22s} {s.N / sec:9.0f} tokens/s  step {sec * 1e3:7.1f} ms  "
            f"floor fraction {floor_s / sec:5.1%}"
            + (f"  peak +{peaks[name] / 2**20:.0f} MiB" if peaks else "")
        )
    if "sparsify" in seconds:
        print(f"  ours / sparsify: {seconds['sparsify'] / seconds[ours]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per impl")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: N / 8 tokens, 3 steps"
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "fast-fp32", "bf16"],
        help="sae.precision to time at (default: fp32 and fast-fp32, and on CUDA "
        "also bf16, which sae.precision auto trains in there)",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="keep freed memory mapped in this process (allocator.py)",
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.precision is None:
        args.precision = ["fp32", "fast-fp32"] + (
            ["bf16"] if device.type == "cuda" else []
        )
    shapes = SHAPES
    if args.quick:
        shapes = [Shape(s.N // 8, s.D, s.M, s.k) for s in SHAPES]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if args.keep_freed_memory:
        print(f"freed memory kept mapped (glibc took it: {keep_freed_memory()})")
    for s in shapes:
        for precision in args.precision:
            bench_shape(s, device, 3 if args.quick else args.steps, precision)


if __name__ == "__main__":
    main()
