"""Sparse-autoencoder ops: Triton kernels, a CPU fast path and torch references.

Use :func:`topk_encode` and :func:`sparse_decode`; they choose the
implementation (see :mod:`kernels.dispatch`).
"""

from .dispatch import sparse_decode, topk_encode
from .sparse_decode import sparse_decode_cpu, sparse_decode_ref, sparse_decode_triton
from .topk_encode import (
    topk_encode_cpu,
    topk_encode_cuda,
    topk_encode_ref,
    topk_encode_triton,
)

__all__ = [
    "sparse_decode",
    "sparse_decode_cpu",
    "sparse_decode_ref",
    "sparse_decode_triton",
    "topk_encode",
    "topk_encode_cpu",
    "topk_encode_cuda",
    "topk_encode_ref",
    "topk_encode_triton",
]
