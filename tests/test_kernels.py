"""SAE kernels against their torch references: outputs and every gradient.

Triton kernels run under ``TRITON_INTERPRET=1`` (set in conftest.py) on CPU
tensors, so shapes stay tiny; references run in fp32 on the same (rounded)
inputs. Shapes are awkward on purpose: D not a power of two, M not a multiple
of any block, odd N, k = 1, repeated latents in a decode row.
"""

import os
from collections.abc import Callable

import pytest
import torch

from kernels import (
    sparse_decode,
    sparse_decode_cpu,
    sparse_decode_ref,
    sparse_decode_triton,
    topk_encode,
    topk_encode_cpu,
    topk_encode_cuda,
    topk_encode_ref,
    topk_encode_triton,
)
from kernels.sparse_decode import Slots, segment_matmul_cpu, segment_matmul_dense
from kernels.topk_encode import _row_topk, topk_encode_fwd_dense, topk_encode_fwd_triton

# (N, D, M, k)
SHAPES = [(7, 24, 100, 1), (33, 40, 100, 5)]
TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}
DTYPES = list(TOL)
DTYPE_IDS = ["fp32", "fp16", "bf16"]
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(
    not INTERPRETED, reason="Triton on CPU tensors needs TRITON_INTERPRET=1"
)
cuda_only = pytest.mark.skipif(
    not torch.cuda.is_available() or INTERPRETED,
    reason="needs CUDA and TRITON_INTERPRET=0 (compiled kernels, not the interpreter)",
)
# The fast paths under test; Triton on CPU tensors only runs in the interpreter.
ENCODERS = [
    pytest.param(topk_encode_triton, id="triton", marks=interpreted_only),
    # What CUDA tensors get (GEMM + top-k, Triton backward), here on CPU tensors.
    pytest.param(topk_encode_cuda, id="cuda-path", marks=interpreted_only),
    pytest.param(topk_encode_cpu, id="cpu"),
]
DECODERS = [
    pytest.param(sparse_decode_triton, id="triton", marks=interpreted_only),
    pytest.param(sparse_decode_cpu, id="cpu"),
]


def _leaf(t):
    """A fresh leaf copy of a tensor (requiring grad if floating); ints pass."""
    if not isinstance(t, torch.Tensor):
        return t
    return t.detach().clone().requires_grad_(t.is_floating_point())


def _fp32(t):
    """Floating tensors upcast to fp32 for the reference; the rest unchanged."""
    return t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t


def _grads(fn: Callable, inputs: list, upstream: torch.Tensor) -> tuple[list, list]:
    """Run ``fn`` on fresh leaf copies; return its float outputs and input grads."""
    leaves = [_leaf(t) for t in inputs]
    out = fn(*leaves)
    first = out[0] if isinstance(out, tuple) else out
    first.backward(upstream.to(first.dtype))
    outs = out if isinstance(out, tuple) else (out,)
    grads = [t.grad.float() for t in leaves if getattr(t, "requires_grad", False)]
    return [o.detach() for o in outs], grads


def _check(impl: Callable, ref: Callable, inputs: list, upstream, dtype) -> list:
    """assert_close on outputs and gradients of ``impl`` vs fp32 ``ref``."""
    # Both get the upstream gradient as ``impl`` receives it, rounded to dtype:
    # at D = 768 in bf16 that rounding alone moves a gathered dot by up to 0.2.
    upstream = upstream.to(dtype).float()
    outs, grads = _grads(impl, inputs, upstream)
    ref_in = [_fp32(t) for t in inputs]
    ref_outs, ref_grads = _grads(ref, ref_in, upstream)
    for got, want in zip(outs, ref_outs, strict=True):
        if want.is_floating_point():
            assert got.dtype == dtype
            torch.testing.assert_close(got.float(), want, **TOL[dtype])
        else:
            torch.testing.assert_close(got, want)  # top-k latents: ties impossible
    assert len(grads) == len(ref_grads)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])
    return outs


def _decode_inputs(N, D, M, k, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand(N, k, generator=g)
    idx = torch.randint(0, M, (N, k), generator=g)
    if k > 1:
        idx[::2, 1] = idx[::2, 0]  # the same latent twice in a row must add up
    W = torch.randn(M, D, generator=g)
    b = torch.randn(D, generator=g)
    upstream = torch.randn(N, D, generator=g)
    ins = [vals.to(dtype), idx, W.to(dtype), b.to(dtype)]
    return [t.to(device) for t in ins], upstream.to(device)


def _encode_inputs(N, D, M, k, dtype, device="cpu", seed=0, bias=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    W = torch.randn(M, D, generator=g) / D**0.5
    b = torch.randn(M, generator=g) * 0.1 + bias
    upstream = torch.randn(N, k, generator=g)
    return [t.to(dtype).to(device) for t in (x, W, b)] + [k], upstream.to(device)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", DECODERS)
def test_sparse_decode_matches_reference(impl, shape, dtype):
    inputs, upstream = _decode_inputs(*shape, dtype)
    _check(impl, sparse_decode_ref, inputs, upstream, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sparse_decode_cpu_at_the_seeds_shape(dtype):
    """D = 768, M = 24,576, k = 192, where the first GPU run failed this check in
    fp16 and bf16 (the CPU path identically) until the reference was given the
    same rounded upstream gradient."""
    inputs, upstream = _decode_inputs(257, 768, 24576, 192, dtype)
    _check(sparse_decode_cpu, sparse_decode_ref, inputs, upstream, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", ENCODERS)
def test_topk_encode_matches_reference(impl, shape, dtype):
    if impl is topk_encode_triton and dtype == torch.bfloat16:
        pytest.skip("Triton 3.7 interpreter: tl.dot on bf16 returns garbage")
    inputs, upstream = _encode_inputs(*shape, dtype)
    vals, _ = _check(impl, topk_encode_ref, inputs, upstream, dtype)
    assert (vals >= 0).all()
    assert (vals[:, :-1] >= vals[:, 1:]).all(), "vals must be in descending order"


def _with_b_pre(inputs: list, dtype: torch.dtype, seed: int = 1) -> list:
    """Encoder inputs plus a ``b_pre`` of the inputs' width and dtype, x and
    b_pre on a 1/16 grid in [-4, 4]: ``x - b_pre`` is then exact in every dtype,
    so the fp32 reference ranks the same pre-activations."""
    x, *rest = inputs
    D = x.shape[1]
    b_pre = torch.randn(D, generator=torch.Generator().manual_seed(seed)) * 0.3

    def grid(t: torch.Tensor) -> torch.Tensor:
        return (t.float() * 16).round().clamp(-64, 64).div(16).to(dtype)

    return [grid(x), *rest, grid(b_pre)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("impl", ENCODERS)
def test_topk_encode_with_b_pre_matches_reference(impl, dtype):
    """x and b_pre both differentiable: b_pre's gradient goes through grad_x."""
    if impl is topk_encode_triton and dtype == torch.bfloat16:
        pytest.skip("Triton 3.7 interpreter: tl.dot on bf16 returns garbage")
    inputs, upstream = _encode_inputs(33, 40, 100, 5, dtype)
    _check(impl, topk_encode_ref, _with_b_pre(inputs, dtype), upstream, dtype)


@pytest.mark.parametrize("impl", ENCODERS)
def test_topk_encode_b_pre_gradient_when_x_is_data(impl):
    """x without gradient (training data): b_pre's gradient, regrouped by latent
    as -grad_b_enc @ W_enc, equals autograd's through ``x - b_pre``."""
    inputs, upstream = _encode_inputs(33, 40, 100, 5, torch.float32)
    x, W, b, k, b_pre = _with_b_pre(inputs, torch.float32)
    grads = {}
    for name, encode in (("impl", impl), ("ref", topk_encode_ref)):
        W_, b_, pre_ = (_leaf(t) for t in (W, b, b_pre))
        if name == "impl":
            vals, idx = encode(x, W_, b_, k, pre_)
        else:  # the formulation the trainer used before b_pre existed
            vals, idx = encode(x - pre_, W_, b_, k)
        vals.backward(upstream)
        grads[name] = [W_.grad, b_.grad, pre_.grad]
    assert grads["ref"][2].abs().max() > 0.1, "b_pre's gradient must be non-trivial"
    for got, want in zip(grads["impl"], grads["ref"], strict=True):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


@pytest.mark.parametrize("impl", ENCODERS)
def test_topk_encode_rows_with_few_positives(impl):
    """Mostly negative pre-activations: zeros come out, with zero gradient."""
    inputs, upstream = _encode_inputs(9, 24, 100, 8, torch.float32, bias=-2.5)
    outs, grads = _grads(impl, inputs, upstream)
    ref_outs, ref_grads = _grads(topk_encode_ref, inputs, upstream)
    (vals, idx), (ref_vals, ref_idx) = outs, ref_outs
    assert (ref_vals == 0).any(), "the case must clip some selected values"
    torch.testing.assert_close(vals, ref_vals)
    positive = ref_vals > 0  # the latents of zero values are arbitrary
    torch.testing.assert_close(idx[positive], ref_idx[positive])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


@interpreted_only
def test_topk_encode_triton_merges_splits_of_m():
    (x, W, b, k), _ = _encode_inputs(5, 24, 300, 6, torch.float32)
    vals, idx = topk_encode_fwd_triton(x, W, b, k, splits=3)
    ref_vals, ref_idx = topk_encode_ref(x, W, b, k)
    torch.testing.assert_close(vals, ref_vals)
    torch.testing.assert_close(idx, ref_idx)


@pytest.mark.parametrize("M,k", [(256, 4), (264, 1), (200, 7), (1024, 3), (2048, 1)])
def test_row_topk_equals_torch_topk_with_ties(M, k):
    """The grouped top-k (M = 8 * G with G >= 4k; M = 1024 and 2048 also group
    the group maxima, two and three levels) and its fallback, with ties."""
    g = torch.Generator().manual_seed(0)
    pre = torch.randint(-20, 20, (13, M), generator=g).float()
    vals, idx = _row_topk(pre, k)
    torch.testing.assert_close(vals, pre.topk(k, dim=1).values)
    torch.testing.assert_close(pre.gather(1, idx), vals)
    assert (idx.sort(1).values.diff(dim=1) > 0).all(), "a latent chosen twice"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("chunk_elems", [1 << 26, 7 * 100])
def test_segment_matmul_dense_matches_segment_kernel(chunk_elems, dtype):
    """The GEMM flavour of S^T @ dense (GPU, half precision), in one chunk and
    in chunks of 7 rows, equals the CPU segment product computed in fp32."""
    (vals, idx, _, _), upstream = _decode_inputs(33, 40, 100, 5, dtype)
    slots = Slots(idx, 100)
    got = segment_matmul_dense(vals, slots, upstream.to(dtype), chunk_elems)
    want = segment_matmul_cpu(vals.float(), slots, upstream.to(dtype).float())
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])


def test_cpu_encoder_chunks_rows():
    """Several row chunks (tiny chunk budget) give the unchunked answer."""
    (x, W, b, k), _ = _encode_inputs(33, 40, 256, 4, torch.float32)
    vals, idx = topk_encode_fwd_dense(x, W, b, k, chunk_elems=5 * W.shape[0])
    ref_vals, ref_idx = topk_encode_ref(x, W, b, k)
    torch.testing.assert_close(vals, ref_vals)
    torch.testing.assert_close(idx, ref_idx)


def _train_step_grads(encode: Callable, decode: Callable, seed: int = 0) -> list:
    """Gradients of one SAE step: encode(x - b_dec) with b_dec as b_pre, decode,
    MSE."""
    g = torch.Generator().manual_seed(seed)
    N, D, M, k = 17, 24, 128, 4
    x = torch.randn(N, D, generator=g)
    W_enc = (torch.randn(M, D, generator=g) / D**0.5).requires_grad_()
    b_enc = torch.zeros(M).requires_grad_()
    W_dec = W_enc.detach().clone().requires_grad_()
    b_dec = (torch.randn(D, generator=g) * 0.1).requires_grad_()
    vals, idx = encode(x, W_enc, b_enc, k, b_dec)
    loss = (decode(vals, idx, W_dec, b_dec) - x).pow(2).mean()
    loss.backward()
    return [loss.detach()] + [p.grad for p in (W_enc, b_enc, W_dec, b_dec)]


def test_dispatch_cpu_fast_path_trains_like_reference(monkeypatch):
    fast = _train_step_grads(topk_encode, sparse_decode)
    monkeypatch.setenv("SAEFLOW_DISABLE_TRITON", "1")
    ref = _train_step_grads(topk_encode, sparse_decode)
    for got, want in zip(fast, ref, strict=True):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_dispatch_picks_by_device_and_env(monkeypatch):
    (x, W, b, k), _ = _encode_inputs(3, 8, 16, 2, torch.float32)
    vals, idx = topk_encode(x, W.requires_grad_(), b, k)
    assert type(vals.grad_fn).__name__ == "TopKEncodeBackward"
    assert sparse_decode(vals, idx, W, b[:8]).grad_fn.name() == "SparseDecodeBackward"
    monkeypatch.setenv("SAEFLOW_DISABLE_TRITON", "1")
    vals, idx = topk_encode(x, W, b, k)
    assert vals.grad_fn.name() == "TopkBackward0"


@pytest.mark.parametrize(
    "encode,decode",
    [
        pytest.param(
            topk_encode_triton,
            sparse_decode_triton,
            id="triton",
            marks=interpreted_only,
        ),
        pytest.param(topk_encode_cpu, sparse_decode_cpu, id="cpu"),
    ],
)
def test_non_contiguous_inputs(encode, decode):
    """Views (here: transposed storage) are accepted and give the same answer."""
    (x, W, b, k), _ = _encode_inputs(5, 8, 64, 3, torch.float32)
    W_t = W.T.contiguous().T  # same values, column-major storage
    vals, idx = topk_encode_ref(x, W, b, k)
    torch.testing.assert_close(encode(x, W_t, b, k), (vals, idx))
    torch.testing.assert_close(
        decode(vals.T.contiguous().T, idx, W_t, b[:8]),
        sparse_decode_ref(vals, idx, W, b[:8]),
    )


def _check_encode_up_to_ties(impl: Callable, inputs: list, upstream, dtype) -> None:
    """An encoder against the reference where latents whose pre-activations tie
    (exactly, or to rounding when tiles sum in another order, as on a GPU) may
    be swapped: the values must be the reference's top-k, and the gradients
    those of the reference evaluated at the latents ``impl`` chose."""
    (vals, idx), grads = _grads(impl, inputs, upstream)
    ref_in = [_fp32(t) for t in inputs]
    torch.testing.assert_close(
        vals.float(), topk_encode_ref(*ref_in).values, **TOL[dtype]
    )

    def at_chosen(x, W, b, k):
        return torch.relu(torch.nn.functional.linear(x, W, b)).gather(1, idx)

    _, ref_grads = _grads(at_chosen, ref_in, upstream)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("impl", ENCODERS)
def test_topk_encode_with_tied_latents(impl):
    """Duplicated encoder rows tie exactly; either latent of a pair may win."""
    inputs, upstream = _encode_inputs(9, 24, 100, 8, torch.float32)
    W, b = inputs[1], inputs[2]
    W[50:] = W[:50]
    b[50:] = b[:50]
    _check_encode_up_to_ties(impl, inputs, upstream, torch.float32)


@cuda_only
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(1001, 200, 3000, 32), (257, 768, 24576, 192)])
def test_triton_on_cuda_matches_reference(shape, dtype):
    inputs, upstream = _encode_inputs(*shape, dtype, device="cuda")
    _check_encode_up_to_ties(topk_encode_triton, inputs, upstream, dtype)
    _check_encode_up_to_ties(topk_encode_cuda, inputs, upstream, dtype)
    inputs, upstream = _decode_inputs(*shape, dtype, device="cuda")
    _check(sparse_decode_triton, sparse_decode_ref, inputs, upstream, dtype)
