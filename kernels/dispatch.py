"""The one place that picks an implementation for each SAE op.

* ``SAEFLOW_DISABLE_TRITON=1`` in the environment: the torch reference, always
  (read at every call, so tests and users can flip it without re-importing).
* CUDA tensors: the Triton kernels, except the encoder's forward, which is a
  cuBLAS GEMM and ``torch.topk`` (``topk_encode_cuda``; the fused Triton encoder
  was 7-30x slower on an H200, docs/performance.md "GPU").
* Anything else (CPU): the pure-torch fast path, which shares the Triton path's
  autograd Functions and differs only in the primitives it calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .sparse_decode import sparse_decode_cpu, sparse_decode_ref, sparse_decode_triton
from .topk_encode import topk_encode_cpu, topk_encode_cuda, topk_encode_ref


def _pick(
    device: torch.device, gpu_fn: Callable, cpu_fn: Callable, ref_fn: Callable
) -> Callable:
    if os.environ.get("SAEFLOW_DISABLE_TRITON") == "1":
        return ref_fn
    return gpu_fn if device.type == "cuda" else cpu_fn


def topk_encode(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    b_pre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``relu((x - b_pre) @ W_enc.T + b_enc)``: ``(vals [N, k] >= 0,
    idx [N, k])``.

    ``x [N, D]``, ``W_enc [M, D]``, ``b_enc [M]``, ``b_pre [D]`` or None (an
    SAE's ``b_dec``; ``x - b_pre`` is taken in their dtype, then cast to
    ``W_enc``'s); differentiable in all four. Pass ``b_pre`` rather than the
    difference: its gradient is then cheap when ``x`` needs none.
    """
    impl = _pick(x.device, topk_encode_cuda, topk_encode_cpu, topk_encode_ref)
    return impl(x, W_enc, b_enc, k, b_pre)


def sparse_decode(
    vals: torch.Tensor, idx: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """``out[n] = sum_j vals[n, j] * W_dec[idx[n, j]] + b_dec``: ``[N, D]``.

    ``vals``/``idx`` ``[N, k]``, ``W_dec [M, D]``, ``b_dec [D]``; differentiable
    in ``vals``, ``W_dec`` and ``b_dec``.
    """
    impl = _pick(
        vals.device, sparse_decode_triton, sparse_decode_cpu, sparse_decode_ref
    )
    return impl(vals, idx, W_dec, b_dec)
