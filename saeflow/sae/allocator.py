"""Host-memory setting for training loops: keep freed blocks mapped (glibc).

A training step frees and reallocates the same large tensors: at the seeds'
shape (D = 768, M = 24,576) the two weight gradients are 75 MB each, and every
step drops them (``zero_grad(set_to_none=True)``) and makes new ones. glibc
serves blocks above its mmap threshold (which grows to at most 32 MiB) with a
fresh ``mmap`` and returns them with ``munmap``, so each step the kernel faults in
and zeroes those pages again: ~37,000 page faults per step at N=1024, D=768,
M=24576, k=192 on the 2-core CPU. Telling glibc to take every block from its
heap and never trim the heap keeps the pages mapped for the next step: no
faults, and a step of 232 instead of 246 ms (docs/performance.md, "Second
pass").

Scoped to the loop: on exit the defaults come back and the freed memory is
returned, so the rest of a job (evaluation, writing) runs as before. Where the
heap cannot grow in place, glibc still maps large blocks afresh (seen with
Triton's interpreter loaded) and the setting saves nothing; elsewhere (not
Linux, or a C library without ``mallopt``) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator

# mallopt parameters and glibc's defaults (malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_NEVER = 2**31 - 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


@contextlib.contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """Inside: large blocks come from the heap and freed ones stay mapped.

    Yields whether the C library took the setting (musl's ``mallopt`` refuses).
    """
    libc = _libc()
    taken = libc is not None and bool(
        libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)
    )
    try:
        yield taken
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)
