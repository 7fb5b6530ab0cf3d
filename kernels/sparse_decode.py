"""Sparse decode of a top-k SAE: ``out[n] = sum_j vals[n, j] * W[idx[n, j]] + b``.

The dense ``[N, M]`` code matrix is never built: the forward gathers the ``k``
active rows of ``W`` per token, and the backward needs only

* ``grad_vals[n, j] = <grad_out[n], W[idx[n, j]]>`` (gathered dot products),
* ``grad_W = S^T @ grad_out`` with ``S`` the ``[N, M]`` code matrix, computed
  latent by latent over the slots sorted by latent index (no ``[N*k, D]``
  intermediate),
* ``grad_b = grad_out.sum(0)``.

The same three primitives serve the encoder's backward (``topk_encode.py``), so
they are exposed as a :class:`SparseOps` bundle with a GPU and a CPU flavour. The
GPU one is Triton, except ``S^T @ grad_out`` in half precision, where one GEMM
over the dense code on the tensor cores beats the segment kernel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cached_property
from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


@triton.jit
def _gather_sum_kernel(
    vals_ptr,  # [N, K] weight of each gathered row (top-k activations)
    idx_ptr,  # [N, K] int64 row of W used by each slot (latent index)
    w_ptr,  # [M, D] table of rows to gather (W_dec, or W_enc in the encoder bwd)
    b_ptr,  # [D] bias added to every output row; read only when HAS_BIAS
    out_ptr,  # [N, D] output rows
    K,
    D,
    HAS_BIAS: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < K
        v = tl.load(vals_ptr + row * K + ks, mask=k_mask, other=0.0)
        i = tl.load(idx_ptr + row * K + ks, mask=k_mask, other=0)
        w = tl.load(
            w_ptr + i[:, None] * D + cols[None, :],
            mask=k_mask[:, None] & col_mask[None, :],
            other=0.0,
        )
        acc += tl.sum(v.to(tl.float32)[:, None] * w.to(tl.float32), axis=0)
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * D + cols, acc, mask=col_mask)


@triton.jit
def _gathered_dot_kernel(
    dense_ptr,  # [N, D] one dense row per token (grad of the decoded output)
    idx_ptr,  # [N, K] int64 row of W used by each slot
    w_ptr,  # [M, D] table of rows (W_dec)
    out_ptr,  # [N, K] output: <dense[n], W[idx[n, j]]>
    K,
    D,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = ks < K
    i = tl.load(idx_ptr + row * K + ks, mask=k_mask, other=0)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        col_mask = cols < D
        g = tl.load(dense_ptr + row * D + cols, mask=col_mask, other=0.0)
        w = tl.load(
            w_ptr + i[:, None] * D + cols[None, :],
            mask=k_mask[:, None] & col_mask[None, :],
            other=0.0,
        )
        acc += tl.sum(w.to(tl.float32) * g.to(tl.float32)[None, :], axis=1)
    tl.store(out_ptr + row * K + ks, acc, mask=k_mask)


# Sparse-transpose x dense, ``out = S^T @ dense``: sort/segment, not atomics.
# Each program owns one latent's output row and walks that latent's slots (the
# flattened ``idx`` argsorted once, O(N*k log) and tiny next to the encoder).
# Why not one atomic add per (slot, column) instead: every output row is then
# written exactly once (no memset of the [M, D] buffer, no read-modify-write
# traffic), the result is deterministic, and it works for bf16, which
# tl.atomic_add does not support. On the CPU the same sorted layout (CSR) took
# 16 ms against 66 ms for chunked scatter-add (index_add_) at N=4096, D=384,
# M=12288, k=32; hot latents make some programs longer, which a GPU absorbs
# because M (>= 10^4) programs far exceed its SM count.
@triton.jit
def _segment_matmul_kernel(
    seg_ptr,  # [M + 1] int64: slots of latent m are order[seg[m]:seg[m + 1]]
    order_ptr,  # [N*K] int64 flat slot ids (n * K + j) sorted by latent
    coef_ptr,  # [N*K] coefficient per flat slot (vals, or masked grad of vals)
    dense_ptr,  # [N, D] dense row per token (grad of output, or encoder input)
    out_ptr,  # [M, D] output: out[m] = sum over slots s of m of coef[s] * dense[n]
    K,
    D,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    latent = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < D
    start = tl.load(seg_ptr + latent)
    end = tl.load(seg_ptr + latent + 1)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s0 in range(start, end, BLOCK_S):
        ss = s0 + tl.arange(0, BLOCK_S)
        s_mask = ss < end
        slot = tl.load(order_ptr + ss, mask=s_mask, other=0)
        c = tl.load(coef_ptr + slot, mask=s_mask, other=0.0)
        d = tl.load(
            dense_ptr + (slot // K)[:, None] * D + cols[None, :],
            mask=s_mask[:, None] & col_mask[None, :],
            other=0.0,
        )
        acc += tl.sum(c.to(tl.float32)[:, None] * d.to(tl.float32), axis=0)
    tl.store(out_ptr + latent * D + cols, acc, mask=col_mask)


class Slots:
    """Where a code's non-zeros sit: ``idx [N, k]`` (token-major), plus the same
    slots grouped by latent, sorted once on first use and then shared by the
    products of one backward pass."""

    def __init__(self, idx: torch.Tensor, M: int) -> None:
        assert idx.dim() == 2 and idx.dtype == torch.int64, "idx must be [N, k] int64"
        assert idx.is_contiguous(), "idx must be contiguous"
        self.idx = idx
        self.M = M

    @cached_property
    def by_latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seg [M + 1], order [N*k])``: latent m's flat slots (``n * k + j``)
        are ``order[seg[m]:seg[m + 1]]``, in token order."""
        flat = self.idx.flatten()
        # int32 keys: on the CPU a stable int32 sort of 131072 keys took 0.8 ms,
        # the int64 one 5-300 ms depending on the moment.
        order = torch.sort(flat.to(torch.int32), stable=True).indices
        seg = torch.zeros(self.M + 1, dtype=torch.int64, device=flat.device)
        seg[1:] = torch.bincount(flat, minlength=self.M).cumsum(0)
        return seg, order


def _check(coef: torch.Tensor, slots: Slots, table: torch.Tensor) -> None:
    assert coef.shape == slots.idx.shape, f"{tuple(coef.shape)} != idx shape"
    assert table.dim() == 2, "table must be [rows, D]"
    assert coef.device == slots.idx.device == table.device, "tensors on two devices"
    assert coef.is_contiguous() and table.is_contiguous(), "need row-major inputs"


def _block(n: int, cap: int) -> int:
    return min(cap, triton.next_power_of_2(n))


def gather_sum_triton(
    coef: torch.Tensor, slots: Slots, W: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """``out[n] = sum_j coef[n, j] * W[idx[n, j]] (+ b)``, ``[N, D]`` in W's dtype.

    Layout: ``coef`` ``[N, k]`` and ``W`` ``[M, D]`` row-major, ``b`` ``[D]`` or
    None; all on one device. Accumulates in fp32.
    """
    _check(coef, slots, W)
    N, K = coef.shape
    D = W.shape[1]
    if b is not None:
        assert b.shape == (D,) and b.is_contiguous() and b.device == W.device
    out = torch.empty(N, D, dtype=W.dtype, device=W.device)
    BLOCK_D = _block(D, 128)
    grid = (N, triton.cdiv(D, BLOCK_D))
    _gather_sum_kernel[grid](
        coef,
        slots.idx,
        W,
        W if b is None else b,  # never read without HAS_BIAS
        out,
        K,
        D,
        HAS_BIAS=b is not None,
        BLOCK_K=_block(K, 32),
        BLOCK_D=BLOCK_D,
    )
    return out


def gathered_dot_triton(
    dense: torch.Tensor, slots: Slots, W: torch.Tensor
) -> torch.Tensor:
    """``out[n, j] = <dense[n], W[idx[n, j]]>``, ``[N, k]`` in dense's dtype.

    Layout: ``dense`` ``[N, D]`` and ``W`` ``[M, D]`` row-major, one device.
    """
    _check(slots.idx, slots, W)
    N, K = slots.idx.shape
    D = W.shape[1]
    assert dense.shape == (N, D) and dense.is_contiguous()
    out = torch.empty(N, K, dtype=dense.dtype, device=dense.device)
    BLOCK_K = _block(K, 32)
    grid = (N, triton.cdiv(K, BLOCK_K))
    _gathered_dot_kernel[grid](
        dense, slots.idx, W, out, K, D, BLOCK_K=BLOCK_K, BLOCK_D=_block(D, 128)
    )
    return out


def segment_matmul_triton(
    coef: torch.Tensor, slots: Slots, dense: torch.Tensor
) -> torch.Tensor:
    """``out = S^T @ dense`` with ``S[n, idx[n, j]] += coef[n, j]``: ``[M, D]``.

    Layout: ``coef`` ``[N, k]`` and ``dense`` ``[N, D]`` row-major, one device.
    Output in dense's dtype, accumulated in fp32; rows of latents that no slot
    uses come out zero.
    """
    _check(coef, slots, dense)
    N, K = coef.shape
    D = dense.shape[1]
    assert dense.shape[0] == N
    seg, order = slots.by_latent
    out = torch.empty(slots.M, D, dtype=dense.dtype, device=dense.device)
    BLOCK_D = _block(D, 128)
    grid = (slots.M, triton.cdiv(D, BLOCK_D))
    _segment_matmul_kernel[grid](
        seg, order, coef, dense, out, K, D, BLOCK_S=32, BLOCK_D=BLOCK_D
    )
    return out


def gather_sum_cpu(
    coef: torch.Tensor, slots: Slots, W: torch.Tensor, b: torch.Tensor | None
) -> torch.Tensor:
    """CPU twin of :func:`gather_sum_triton`, via ``embedding_bag``."""
    out = F.embedding_bag(slots.idx, W, per_sample_weights=coef, mode="sum")
    return out if b is None else out.add_(b)


def gathered_dot_cpu(
    dense: torch.Tensor, slots: Slots, W: torch.Tensor
) -> torch.Tensor:
    """CPU twin of :func:`gathered_dot_triton`, via ``sampled_addmm``.

    ``sampled_addmm`` computes one dot product per stored entry without
    materialising the ``[N, k, D]`` gather (8 ms against 118 ms for a chunked
    gather + bmm at N=4096, D=384, k=32). Walking the entries latent by latent
    reads each row of W once instead of once per use: 2-3x faster than token
    order at N=1024, D=768, M=24576, k=192, where W does not fit in the cache.
    MKL takes fp32/fp64 only, so half precision goes through fp32.
    """
    seg, order = slots.by_latent
    N, K = slots.idx.shape
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            seg, order // K, torch.zeros(N * K), (slots.M, N)
        )
    dots = torch.sparse.sampled_addmm(pattern, W.float(), dense.float().T, beta=0.0)
    out = torch.empty(N * K, dtype=dense.dtype)
    out[order] = dots.values().to(dense.dtype)
    return out.view(N, K)


def segment_matmul_cpu(
    coef: torch.Tensor, slots: Slots, dense: torch.Tensor
) -> torch.Tensor:
    """CPU twin of :func:`segment_matmul_triton`: one ``embedding_bag`` per latent.

    Bag m holds the tokens of latent m's slots, weighted by their coefficients,
    over the table ``dense`` (which fits in the cache). Faster than MKL's CSR
    product: 22 ms against 37 ms at N=4096, D=384, M=12288, k=32.
    """
    seg, order = slots.by_latent
    tokens = order // slots.idx.shape[1]
    weights = coef.flatten()[order]
    return F.embedding_bag(
        tokens, dense, seg[:-1], mode="sum", per_sample_weights=weights
    )


class SparseOps(NamedTuple):
    """The three sparse primitives both SAE ops are built from, per backend."""

    gather_sum: Callable[..., torch.Tensor]
    gathered_dot: Callable[..., torch.Tensor]
    segment_matmul: Callable[..., torch.Tensor]


def segment_matmul_dense(
    coef: torch.Tensor, slots: Slots, dense: torch.Tensor, chunk_elems: int = 1 << 26
) -> torch.Tensor:
    """:func:`segment_matmul_triton` through the dense code ``S`` and a GEMM, a
    chunk of ``chunk_elems`` code entries (rows of ``S``) at a time; chunks add
    up in fp32. On tensor cores this wins in half precision and loses in fp32:
    0.09 against 0.77 ms in bf16 and 0.87 against 0.53 ms in fp32 at N=1024,
    D=768, M=24576, k=192 on an H200."""
    _check(coef, slots, dense)
    N, D = dense.shape
    rows = max(1, min(N, chunk_elems // slots.M))
    code = torch.zeros(rows, slots.M, dtype=dense.dtype, device=dense.device)
    out = None
    for start in range(0, N, rows):
        stop = min(start + rows, N)
        part = code[: stop - start].zero_()
        part.scatter_add_(1, slots.idx[start:stop], coef[start:stop].to(dense.dtype))
        product = part.T @ dense[start:stop]
        if start == 0 and stop == N:
            return product
        out = product.float() if out is None else out.add_(product)
    return out.to(dense.dtype)


def segment_matmul_gpu(
    coef: torch.Tensor, slots: Slots, dense: torch.Tensor
) -> torch.Tensor:
    """The faster of the two on a GPU: the GEMM in half precision, else Triton."""
    if dense.dtype in (torch.float16, torch.bfloat16):
        return segment_matmul_dense(coef, slots, dense)
    return segment_matmul_triton(coef, slots, dense)


TRITON_OPS = SparseOps(gather_sum_triton, gathered_dot_triton, segment_matmul_gpu)
CPU_OPS = SparseOps(gather_sum_cpu, gathered_dot_cpu, segment_matmul_cpu)


class SparseDecode(torch.autograd.Function):
    """Sparse decode whose backward never densifies the code matrix."""

    @staticmethod
    def forward(
        ctx,
        vals: torch.Tensor,
        idx: torch.Tensor,
        W_dec: torch.Tensor,
        b_dec: torch.Tensor,
        ops: SparseOps,
    ) -> torch.Tensor:
        vals, idx, W_dec, b_dec = (t.contiguous() for t in (vals, idx, W_dec, b_dec))
        ctx.ops = ops
        ctx.save_for_backward(vals, idx, W_dec)
        return ops.gather_sum(vals, Slots(idx, W_dec.shape[0]), W_dec, b_dec)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        vals, idx, W_dec = ctx.saved_tensors
        ops: SparseOps = ctx.ops
        grad_out = grad_out.contiguous()
        slots = Slots(idx, W_dec.shape[0])  # sorted once, used by both products
        need_vals, _, need_w, need_b, _ = ctx.needs_input_grad
        grad_vals = ops.gathered_dot(grad_out, slots, W_dec) if need_vals else None
        grad_w = ops.segment_matmul(vals, slots, grad_out) if need_w else None
        grad_b = grad_out.sum(0) if need_b else None
        return grad_vals, None, grad_w, grad_b, None


def sparse_decode_triton(
    vals: torch.Tensor, idx: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Triton sparse decode: ``vals``/``idx`` ``[N, k]``, ``W_dec`` ``[M, D]``."""
    return SparseDecode.apply(vals, idx, W_dec, b_dec, TRITON_OPS)


def sparse_decode_cpu(
    vals: torch.Tensor, idx: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Pure-torch sparse decode tuned for the CPU (same maths as the Triton path)."""
    return SparseDecode.apply(vals, idx, W_dec, b_dec, CPU_OPS)


def sparse_decode_ref(
    vals: torch.Tensor, idx: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Reference: ``embedding_bag`` sum with per-sample weights, plain autograd."""
    return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum") + b_dec
