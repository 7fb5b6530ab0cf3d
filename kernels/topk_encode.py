"""Fused top-k SAE encoder: ``topk(relu(x @ W_enc.T + b_enc), k) -> (vals, idx)``.

In the fused Triton kernel the ``[N, M]`` pre-activation is never written to
memory: it computes it one ``[BLOCK_N, BLOCK_M]`` tile at a time, keeps a running
top-k per row in registers, and writes one candidate list per split of M; a
small torch top-k merges the splits. What CUDA tensors get by default is faster
on an H200 (``topk_encode_cuda``): a cuBLAS GEMM and ``torch.topk`` over chunks
of rows, then the same Triton backward; the CPU path encodes chunks of rows the
same way with MKL. Chunks bound memory whatever N.

Top-k selection carries (value, latent) pairs as one int64 key,
``float_bits(value) << 32 | latent``: ReLU outputs are >= 0, whose IEEE bits
order like the integers, and ``tl.topk`` returns values only.

``vals`` come out in descending order. Where a row has fewer than ``k`` positive
pre-activations, the zero-valued entries carry arbitrary latents; their
contributions and gradients are zero.

The backward uses only ``x``, ``vals`` and ``idx``: ``grad_x`` is a sparse
decode with ``W_enc``, ``grad_W_enc`` a sparse-transpose x dense product with
``k`` non-zeros per token, ``grad_b_enc`` a scatter-add of ``N * k`` scalars.

Every encoder takes an optional ``b_pre`` (an SAE's ``b_dec``) and encodes
``x - b_pre``. Passing it rather than the difference lets the backward skip
``grad_x`` when ``x`` is data: ``b_pre``'s gradient, ``-grad_x`` summed over
tokens, equals ``-grad_b_enc @ W_enc``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .sparse_decode import CPU_OPS, TRITON_OPS, Slots, SparseOps


@triton.jit
def _topk_encode_kernel(
    x_ptr,  # [N, D] encoder input (the caller has subtracted b_dec)
    w_ptr,  # [M, D] encoder weights, row m = latent m
    b_ptr,  # [M] encoder bias
    key_ptr,  # [N, SPLITS, KP] int64 out: per split, the top-KP packed keys
    N,
    M,
    D,
    cols_per_split,  # latents per split, a multiple of BLOCK_M
    SPLITS: tl.constexpr,
    KP: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    split = tl.program_id(1)
    # -1 sorts below every real key (real keys are >= 0), so empty slots lose.
    best = tl.full([BLOCK_N, KP], -1, dtype=tl.int64)
    first = split * cols_per_split
    for m0 in range(first, first + cols_per_split, BLOCK_M):
        lat = m0 + tl.arange(0, BLOCK_M)
        lat_mask = lat < M
        acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            col_mask = cols < D
            xt = tl.load(
                x_ptr + rows[:, None].to(tl.int64) * D + cols[None, :],
                mask=row_mask[:, None] & col_mask[None, :],
                other=0.0,
            )
            wt = tl.load(
                w_ptr + lat[:, None].to(tl.int64) * D + cols[None, :],
                mask=lat_mask[:, None] & col_mask[None, :],
                other=0.0,
            )
            acc = tl.dot(xt, tl.trans(wt), acc, input_precision=DOT_PRECISION)
        acc += tl.load(b_ptr + lat, mask=lat_mask, other=0.0).to(tl.float32)[None, :]
        # where(>0) rather than maximum(): -0.0 would pack as a negative key.
        acc = tl.where(acc > 0, acc, 0.0)
        bits = acc.to(tl.int32, bitcast=True).to(tl.int64)
        key = (bits << 32) | lat.to(tl.int64)[None, :]
        key = tl.where(lat_mask[None, :], key, -1)
        tile_best = tl.topk(key, KP)
        best = tl.topk(tl.reshape(tl.join(best, tile_best), [BLOCK_N, 2 * KP]), KP)
    out = key_ptr + rows[:, None].to(tl.int64) * (SPLITS * KP) + split * KP
    tl.store(out + tl.arange(0, KP)[None, :], best, mask=row_mask[:, None])


def _unpack(
    keys: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split packed int64 keys into (float values in ``dtype``, int64 latents)."""
    vals = (keys >> 32).to(torch.int32).view(torch.float32).to(dtype)
    return vals, keys & 0xFFFFFFFF


def _default_splits(row_blocks: int, col_blocks: int, device: torch.device) -> int:
    """Enough splits of M to give every SM two programs (1 off the GPU)."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(col_blocks, triton.cdiv(2 * sms, row_blocks)))


def topk_encode_fwd_triton(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    splits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``relu(x @ W_enc.T + b_enc)`` per row: ``(vals [N, k], idx [N, k])``.

    Layout: ``x`` ``[N, D]``, ``W_enc`` ``[M, D]``, ``b_enc`` ``[M]``, row-major on
    one device, ``k <= M``. ``splits`` (default: fill the GPU) cuts M into that
    many ranges scanned in parallel and merged afterwards. ``vals`` are in x's
    dtype, descending; ``idx`` int64. Accumulates in fp32.
    """
    N, D = x.shape
    M = W_enc.shape[0]
    assert W_enc.shape == (M, D) and b_enc.shape == (M,), "W_enc [M, D], b_enc [M]"
    assert 1 <= k <= M, f"k={k} must be in [1, M={M}]"
    assert x.is_contiguous() and W_enc.is_contiguous() and b_enc.is_contiguous()
    assert x.device == W_enc.device == b_enc.device, "tensors on different devices"
    KP = triton.next_power_of_2(k)
    BLOCK_N = 16  # tl.dot's minimum; the running top-KP keys also live per row
    BLOCK_M = max(64, KP)  # tl.topk needs the tile at least KP wide
    BLOCK_D = max(16, min(64, triton.next_power_of_2(D)))
    row_blocks = triton.cdiv(N, BLOCK_N)
    col_blocks = triton.cdiv(M, BLOCK_M)
    splits = splits or _default_splits(row_blocks, col_blocks, x.device)
    cols_per_split = triton.cdiv(col_blocks, splits) * BLOCK_M
    splits = triton.cdiv(M, cols_per_split)  # drop splits that would be empty
    keys = torch.empty(N, splits, KP, dtype=torch.int64, device=x.device)
    tf32 = x.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    _topk_encode_kernel[(row_blocks, splits)](
        x,
        W_enc,
        b_enc,
        keys,
        N,
        M,
        D,
        cols_per_split,
        SPLITS=splits,
        KP=KP,
        BLOCK_N=BLOCK_N,
        BLOCK_M=BLOCK_M,
        BLOCK_D=BLOCK_D,
        # Same fp32 rounding as F.linear under torch's global TF32 switch, so
        # both pick the same latents.
        DOT_PRECISION="tf32" if tf32 else "ieee",
        # Wide top-k lists need the registers of 8 warps. ptxas for sm_90 at
        # k=192, D=768 (python -m kernels.compile_check): with 4 warps fp32
        # spills 692 bytes per thread and bf16 takes all 255 registers; with 8,
        # fp32 spills 24 bytes and bf16 needs 214 registers. Chosen on those
        # figures: no GPU was at hand to time it.
        num_warps=8 if KP >= 128 else 4,
    )
    # Each split's list is sorted already; merging needs one small top-k.
    keys = keys[:, 0, :k] if splits == 1 else keys.view(N, -1).topk(k, dim=1).values
    return _unpack(keys, x.dtype)


def _row_topk(
    pre: torch.Tensor, k: int, sorted: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pre.topk(k, dim=1, sorted=sorted)``, cheaper when ``M`` splits into groups.

    Column ``m`` belongs to group ``m % G`` of ``g = M / G`` columns. Each top-k
    element lies in a group whose max is at least the k-th value, and at most k
    groups beat every other group's max (ties included), so the top-k groups by
    max hold the whole answer. The group max is an elementwise max over ``g``
    contiguous slices (vectorised), which leaves torch.topk only ``G`` plus
    ``g * k`` entries per row instead of ``M``. Of g in 2..16, 8 was fastest:
    66 against 84 ms for plain topk at N=4096, M=12288, k=32, and 46 against
    66 ms at N=1024, M=24576, k=192 (2 threads). The top-k groups are found the
    same way while the maxima still split (M >= 256 k): 4.1 against 5.4 ms per
    chunk of 682 rows at M=12288, k=32.
    """
    C, M = pre.shape
    g = 8
    if M % g or M // g < 4 * k:
        return pre.topk(k, dim=1, sorted=sorted)
    G = M // g
    strided = pre.view(C, g, G)
    groups = _row_topk(strided.amax(1), k, sorted=False)[1]  # [C, k]
    cand = strided.gather(2, groups[:, None, :].expand(C, g, k)).view(C, g * k)
    vals, pos = cand.topk(k, dim=1, sorted=sorted)
    return vals, (pos // k) * G + groups.gather(1, pos % k)


def topk_encode_fwd_dense(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    chunk_elems: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of :func:`topk_encode_fwd_triton` through the dense pre-activation:
    a GEMM (cuBLAS, MKL/oneDNN) and a row top-k per chunk of rows.

    A chunk holds ``chunk_elems`` pre-activations, so memory does not grow with
    ``N * M``. On the CPU (default 2^23, 32 MiB, about the last-level cache, so
    the top-k reads what the matmul has just written) larger GEMMs amortise
    packing ``W_enc``: per core 2^23 beat 2^22 (57 against 53 GFLOP/s at N=4096,
    D=384, M=12288, k=32; 48 against 41 at N=1024, D=768, M=24576, k=192); half
    precision is computed in fp32 there (no fast half matmul on most CPUs) and
    selected with :func:`_row_topk`. On a GPU (default 2^26, 256 MiB in fp32)
    the GEMM runs in x's dtype on the tensor cores and ``torch.topk`` selects:
    on an H200 this took 1.3 ms in fp32 and 0.38 ms in bf16 at N=1024, D=768,
    M=24576, k=192, against 10.2 ms for the fused Triton kernel, whose running
    top-k lists keep its ``tl.dot`` far from the tensor cores' rate
    (docs/performance.md, "GPU").
    """
    N, D = x.shape
    M = W_enc.shape[0]
    assert W_enc.shape == (M, D) and b_enc.shape == (M,), "W_enc [M, D], b_enc [M]"
    assert 1 <= k <= M, f"k={k} must be in [1, M={M}]"
    cpu = x.device.type == "cpu"
    chunk_elems = chunk_elems or (1 << 23 if cpu else 1 << 26)
    dtype = torch.float32 if cpu else x.dtype
    select = _row_topk if cpu else _topk
    rows = max(1, min(N, chunk_elems // M))
    xc, Wt, bc = x.to(dtype), W_enc.to(dtype).T, b_enc.to(dtype)
    buf = torch.empty(rows, M, dtype=dtype, device=x.device)
    vals = torch.empty(N, k, dtype=dtype, device=x.device)
    idx = torch.empty(N, k, dtype=torch.int64, device=x.device)
    for start in range(0, N, rows):
        stop = min(start + rows, N)
        pre = torch.addmm(bc, xc[start:stop], Wt, out=buf[: stop - start])
        vals[start:stop], idx[start:stop] = select(pre, k)
    return vals.clamp_(min=0).to(x.dtype), idx


def _topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # On an H200 _row_topk's group maxima cost more than they save inside a step.
    return pre.topk(k, dim=1)


class EncodeBackend(NamedTuple):
    """A forward top-k encoder and the sparse primitives for its backward."""

    forward: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    ops: SparseOps


TRITON_BACKEND = EncodeBackend(topk_encode_fwd_triton, TRITON_OPS)
CUDA_BACKEND = EncodeBackend(topk_encode_fwd_dense, TRITON_OPS)
CPU_BACKEND = EncodeBackend(topk_encode_fwd_dense, CPU_OPS)


def _centre(
    x: torch.Tensor, b_pre: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``x - b_pre`` in their own (wider) dtype, then cast to the weights'."""
    return x if b_pre is None else (x - b_pre).to(dtype)


class TopKEncode(torch.autograd.Function):
    """Fused top-k encoder; saves ``x``, ``vals``, ``idx``, never the dense code."""

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        k: int,
        backend: EncodeBackend,
        b_pre: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.x_dtype = x.dtype
        x = _centre(x, b_pre, W_enc.dtype)
        x, W_enc, b_enc = (t.contiguous() for t in (x, W_enc, b_enc))
        vals, idx = backend.forward(x, W_enc, b_enc, k)
        ctx.ops = backend.ops
        ctx.pre_dtype = None if b_pre is None else b_pre.dtype
        ctx.save_for_backward(x, W_enc, vals, idx)
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, grad_vals: torch.Tensor, _grad_idx: None):
        x, W_enc, vals, idx = ctx.saved_tensors
        ops: SparseOps = ctx.ops
        need_x, need_w, need_b, _, _, need_pre = ctx.needs_input_grad
        # ReLU's gradient: zero where the selected value was clipped to 0.
        g = torch.where(vals > 0, grad_vals, 0).contiguous()
        slots = Slots(idx, W_enc.shape[0])
        grad_x = ops.gather_sum(g, slots, W_enc, None) if need_x else None
        grad_w = ops.segment_matmul(g, slots, x) if need_w else None
        grad_b = grad_pre = None
        if need_b or need_pre:  # fp32 sums: a latent can collect N * k terms
            grad_b = torch.zeros(W_enc.shape[0], device=g.device)
            grad_b.index_add_(0, idx.flatten(), g.flatten().float())
        if need_pre:
            # b_pre's gradient is minus grad_x summed over tokens, and that sum
            # regroups by latent into grad_b @ W_enc: one pass over W_enc
            # instead of the N * k gathered rows of grad_x (1.4 against 12.5 ms
            # at N=1024, D=768, M=24576, k=192 on the CPU), taken when x itself
            # needs no gradient (training data).
            total = grad_x.float().sum(0) if need_x else grad_b @ W_enc.float()
            grad_pre = total.neg_().to(ctx.pre_dtype)
        if grad_x is not None:
            grad_x = grad_x.to(ctx.x_dtype)
        grad_b = grad_b.to(g.dtype) if need_b else None
        return grad_x, grad_w, grad_b, None, None, grad_pre


def topk_encode_triton(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    b_pre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton fused encoder: ``x [N, D]``, ``W_enc [M, D]``, ``b_enc [M]``."""
    return TopKEncode.apply(x, W_enc, b_enc, k, TRITON_BACKEND, b_pre)


def topk_encode_cuda(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    b_pre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What CUDA tensors get: cuBLAS GEMM + top-k forward, Triton backward."""
    return TopKEncode.apply(x, W_enc, b_enc, k, CUDA_BACKEND, b_pre)


def topk_encode_cpu(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    b_pre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch encoder tuned for the CPU (same maths as the Triton path)."""
    return TopKEncode.apply(x, W_enc, b_enc, k, CPU_BACKEND, b_pre)


def topk_encode_ref(
    x: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    k: int,
    b_pre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: dense pre-activation, ReLU, ``torch.topk``, plain autograd."""
    x = _centre(x, b_pre, W_enc.dtype)
    return F.relu(F.linear(x, W_enc, b_enc)).topk(k, dim=1)
