"""Compile every Triton kernel for an NVIDIA GPU on a machine without one.

The interpreter (``TRITON_INTERPRET=1``) runs the kernels on the CPU but accepts
code that the GPU compiler rejects, so passing ``tests/test_kernels.py`` does not
prove that a kernel compiles. This check calls the real launchers with CPU
tensors while a stand-in driver reports a CUDA target (``sm_80``: A100,
``sm_90``: H100/H200). Triton then specialises each launch as it would on that
GPU, a hook stops it before anything runs, and the recorded specialisation is
lowered all the way to a cubin (TTIR, TTGIR, LLVM IR, PTX, then the ptxas that
ships with Triton). ptxas's report gives registers, spills and shared memory per
kernel. What it cannot tell: whether results are right on the GPU, or how fast.

    python -m kernels.compile_check                 # every target, dtype, shape
    python -m kernels.compile_check --targets sm_90 --dtypes bfloat16 \
        --shapes 384:12288:32

Run it without ``TRITON_INTERPRET`` (the interpreter replaces the kernels).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from .sparse_decode import (
    Slots,
    gather_sum_triton,
    gathered_dot_triton,
    segment_matmul_triton,
)
from .topk_encode import topk_encode_fwd_triton

TARGETS = {"sm_80": 80, "sm_90": 90}
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
SHAPES = ("384:12288:32", "768:24576:192")
"""D:M:k of the two shapes bench/sae_train.py times (k sets the top-k width)."""
TOKENS = 64
"""Rows per launch: the compiled code does not depend on N (it is not a constexpr)."""
SPLITS = 4
"""Splits of M for the encoder; several, as on a GPU, so the split layout compiles."""


class Compiled(NamedTuple):
    """ptxas's figures for one compiled specialisation."""

    target: str
    dtype: str
    shape: str
    launch: str
    """What the launch computes in a training step."""
    num_warps: int
    registers: int
    spill_bytes: int
    shared_bytes: int
    seconds: float


_Figures = tuple[int, int, int, int, float]
"""warps, registers, spill bytes, shared bytes, compile seconds."""


class _TargetDriver:
    """Stands in for Triton's CUDA driver: names the target, never launches."""

    def __init__(self, capability: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", capability, 32)

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")


def _launches(D: int, M: int, k: int, dtype: torch.dtype) -> dict[str, Callable]:
    """Every launch one training step makes, by role (the encoder's backward
    and the decoder's share primitives; W_enc and W_dec share one product)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(TOKENS, D, generator=gen).to(dtype)
    W = torch.randn(M, D, generator=gen).to(dtype)
    b = torch.zeros(M, dtype=dtype)
    vals = torch.rand(TOKENS, k, generator=gen).to(dtype)
    slots = Slots(torch.randint(0, M, (TOKENS, k), generator=gen), M)
    return {
        "encode (fused top-k)": lambda: topk_encode_fwd_triton(x, W, b, k, SPLITS),
        "decode": lambda: gather_sum_triton(
            vals, slots, W, torch.zeros(D, dtype=dtype)
        ),
        "grad x (encoder)": lambda: gather_sum_triton(vals, slots, W, None),
        "grad vals (decoder)": lambda: gathered_dot_triton(x, slots, W),
        "grad W_enc, W_dec": lambda: segment_matmul_triton(vals, slots, x),
    }


@contextlib.contextmanager
def _targeting(capability: int) -> Iterator[None]:
    """Triton sees a CUDA GPU of this compute capability while inside."""
    from triton.runtime.driver import driver

    previous = driver._active  # reset_active() would look for a real GPU
    driver.set_active(_TargetDriver(capability))
    try:
        yield
    finally:
        driver._active = previous


@contextlib.contextmanager
def _recording(capability: int) -> Iterator[list]:
    """Launches made inside record ``(kernel, specialisation data)``, not run."""
    from triton import knobs

    seen: list = []

    def hook(*, fn, compile, **_) -> bool:
        seen.append((fn.jit_function, compile["specialization_data"]))
        return True  # "handled": Triton neither compiles nor launches

    knobs.runtime.jit_cache_hook = hook
    try:
        with _targeting(capability):
            yield seen
    finally:
        knobs.runtime.jit_cache_hook = None


_PTXAS = re.compile(
    r"(?P<stores>\d+) bytes spill stores.*?Used (?P<regs>\d+) registers", re.S
)


def _compile(jit_fn, spec: str, capability: int) -> _Figures:
    """Compile one recorded specialisation and read ptxas's figures."""
    out = io.StringIO()
    start = time.perf_counter()
    with _targeting(capability), contextlib.redirect_stdout(out):
        kernel = jit_fn.preload(spec)
    seconds = time.perf_counter() - start
    # preload also caches the kernel for launching, which this driver cannot do.
    jit_fn.device_caches.clear()
    m = _PTXAS.search(out.getvalue())
    assert m, f"no ptxas report for {jit_fn}:\n{out.getvalue()}"
    meta = kernel.metadata
    return meta.num_warps, int(m["regs"]), int(m["stores"]), meta.shared, seconds


def check(
    targets: list[str], dtypes: list[str], shapes: list[str], report: Callable
) -> list[Compiled]:
    """Compile every launch for each target, dtype and shape; ``report`` gets each
    result as it comes."""
    from triton import knobs

    results = []
    figures: dict[str, _Figures] = {}  # by specialisation
    # A fresh cache: a cached cubin would skip ptxas and its report. Both knob
    # groups are restored on the way out.
    with (
        knobs.cache.scope(),
        knobs.nvidia.scope(),
        tempfile.TemporaryDirectory() as cache,
    ):
        knobs.cache.dir = cache
        knobs.nvidia.dump_ptxas_log = True  # ptxas's report, printed to stdout
        for target, dtype, shape in itertools.product(targets, dtypes, shapes):
            D, M, k = (int(v) for v in shape.split(":"))
            for role, launch in _launches(D, M, k, DTYPES[dtype]).items():
                with _recording(TARGETS[target]) as seen:
                    launch()
                ((jit_fn, spec),) = seen
                if spec not in figures:  # other shapes can share one specialisation
                    figures[spec] = _compile(jit_fn, spec, TARGETS[target])
                results.append(Compiled(target, dtype, shape, role, *figures[spec]))
                report(results[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="D:M:k")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: the interpreter replaces the kernels")
    print(
        f"{'target':6} {'dtype':8} {'D:M:k':13} {'launch':20} warps regs "
        "spill_B smem_B      s",
        flush=True,
    )

    def report(c: Compiled) -> None:
        print(
            f"{c.target:6} {c.dtype:8} {c.shape:13} {c.launch:20} {c.num_warps:5} "
            f"{c.registers:4} {c.spill_bytes:7} {c.shared_bytes:6} {c.seconds:6.1f}",
            flush=True,
        )

    results = check(args.targets, args.dtypes, args.shapes, report)
    print(f"{len(results)} launches compiled to cubin", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
