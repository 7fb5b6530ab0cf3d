"""Bench-only: tell glibc to keep freed memory mapped for the whole process.

A training step frees and remakes the same large tensors (at D = 768,
M = 24,576 the two weight gradients are 75 MB each). glibc serves blocks above
its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns them with
``munmap``, so every step faults those pages in again: ~37,000 minor faults per
step of our kernels at N=1024, D=768, M=24576, k=192, and more for sparsify's
step, which allocates more large temporaries. ``--keep-freed-memory`` in
``sae_train.py`` and ``sae_quality.py`` takes every block from the heap and never
trims it, so every implementation is timed without those faults.

Not in saeflow's trainer: whether a freed block is reused depends on what was
allocated next to it. In a probe allocating and freeing 64 MiB four times, 1 to
4 of the 4 rounds still faulted, varying from process to process, and in one
the heap grew by 64 MiB a round (docs/performance.md, "Second pass").
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Set it for this process; whether the C library took it (Linux glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    if not hasattr(libc, "mallopt"):
        return False
    return bool(
        libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    )
