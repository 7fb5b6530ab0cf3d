"""The crosscoder: one training step against an explicit two-decoder reference
(every kernel path), the paired input, classes, and Latent Scaling on latents
whose truth is built in."""

import h5py
import numpy as np
import pytest
import torch
from test_compare import D, write_cache
from test_kernels import interpreted_only

from kernels import (
    sparse_decode_cpu,
    sparse_decode_ref,
    sparse_decode_triton,
    topk_encode_cpu,
    topk_encode_ref,
    topk_encode_triton,
)
from saeflow.compare.coactivation import TokenAlignmentError
from saeflow.crosscoder.analysis import Halves, classify, crosscoder_scaling
from saeflow.crosscoder.as_sae import fold_input_scales, write_paired_cache
from saeflow.crosscoder.data import PairedActivationSource
from saeflow.sae.model import SAEShape, TopKSAE
from saeflow.workflow.config import CrosscoderConfig

KERNELS = [
    pytest.param((topk_encode_ref, sparse_decode_ref), id="ref"),
    pytest.param((topk_encode_cpu, sparse_decode_cpu), id="cpu"),
    pytest.param(
        (topk_encode_triton, sparse_decode_triton), id="triton", marks=interpreted_only
    ),
]


def crosscoder_loss_ref(xb, xf, w_enc, b_enc, w_dec, b_dec, k):
    """A two-model BatchTopK crosscoder written out per model: one encoder over
    both (each model's half of the encoder reads its own input), the batch's
    N·k largest activations kept, one decoder and bias per model, the loss the
    sum of both models' squared errors."""
    d = xb.shape[1]
    pre = (xb - b_dec[:d]) @ w_enc[:, :d].T + (xf - b_dec[d:]) @ w_enc[:, d:].T + b_enc
    acts = torch.relu(pre)
    keep = acts.flatten().topk(len(xb) * k).values[-1]
    f = torch.where(acts >= keep, acts, 0.0)
    rb = f @ w_dec[:, :d] + b_dec[:d]
    rf = f @ w_dec[:, d:] + b_dec[d:]
    return (xb - rb).pow(2).sum() + (xf - rf).pow(2).sum()


@pytest.mark.parametrize("kernels", KERNELS)
def test_crosscoder_step_equals_the_two_decoder_reference(kernels, monkeypatch):
    encode, decode = kernels
    monkeypatch.setattr("saeflow.sae.model.topk_encode", encode)
    monkeypatch.setattr("saeflow.sae.model.sparse_decode", decode)
    n, d, m, k = 9, 6, 40, 3
    g = torch.Generator().manual_seed(0)
    xb, xf = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    cc = TopKSAE(SAEShape(2 * d, m, k, "batchtopk"), seed=1).train()
    with torch.no_grad():
        cc.b_enc.normal_(0, 0.1, generator=g)
        cc.b_dec.normal_(0, 0.1, generator=g)
    params = [cc.W_enc, cc.b_enc, cc.W_dec, cc.b_dec]
    ref_params = [p.detach().clone().requires_grad_() for p in params]

    out = cc(torch.cat([xb, xf], dim=1))
    loss = (torch.cat([xb, xf], dim=1) - out.recon).pow(2).sum()
    loss.backward()
    ref = crosscoder_loss_ref(xb, xf, *ref_params, k)
    ref.backward()

    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)
    for p, r in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-4, atol=1e-4)


def paired_caches(tmp_path, xb: np.ndarray, xf: np.ndarray, token_id=None):
    write_cache(tmp_path / "b.h5", xb, n_docs=20)
    write_cache(tmp_path / "f.h5", xf, n_docs=20, token_id=token_id)
    return [tmp_path / "b.h5"], [tmp_path / "f.h5"]


def test_paired_rows_are_both_models_scaled_side_by_side(tmp_path):
    rng = np.random.default_rng(0)
    xb, xf = rng.normal(size=(800, D)), 3.0 * rng.normal(size=(800, D))
    source = PairedActivationSource(*paired_caches(tmp_path, xb, xf), 0.1)
    assert source.d_model == 2 * D and source.model_dim == D
    sb, sf = source.scales
    assert sb / sf == pytest.approx(3.0, rel=0.05)  # each model to norm² D
    held = torch.cat(list(source.holdout_batches(64)))
    want = np.concatenate([xb[720:] * sb, xf[720:] * sf], axis=1)
    np.testing.assert_allclose(held.numpy(), want, rtol=2e-3, atol=2e-3)


def test_paired_source_refuses_different_tokens(tmp_path):
    x = np.zeros((200, D))
    caches = paired_caches(tmp_path, x, x, token_id=np.arange(200) + 1)
    with pytest.raises(TokenAlignmentError, match="same tokens"):
        PairedActivationSource(*caches, 0.1)


@pytest.mark.parametrize("kind", ["batchtopk", "topk"])
def test_folded_crosscoder_reads_raw_activations_exactly(kind):
    """Scales folded into the weights: the same code on the raw concatenation as
    the crosscoder on the scaled one, and a reconstruction in raw units."""
    d, m, k = 5, 30, 3
    g = torch.Generator().manual_seed(0)
    cc = TopKSAE(SAEShape(2 * d, m, k, kind), seed=2)
    with torch.no_grad():
        cc.b_dec.normal_(0, 0.3, generator=g)
        cc.b_enc.normal_(0, 0.1, generator=g)
        cc.scale.fill_(0.7)
        if kind == "batchtopk":
            cc.threshold.fill_(0.05)
    cc.eval()
    scales = (1.9, 0.4)
    raw = torch.randn(50, 2 * d, generator=g)
    s = torch.cat([torch.full((d,), scales[0]), torch.full((d,), scales[1])])
    folded = fold_input_scales(cc, scales)
    want, got = cc.encode(raw * s), folded.encode(raw)
    torch.testing.assert_close(got.idx, want.idx)
    torch.testing.assert_close(got.vals, want.vals, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        folded.decode(got), cc.decode(want) / s, rtol=1e-5, atol=1e-5
    )
    assert folded.code_width == got.vals.shape[1]


def test_paired_cache_is_both_caches_side_by_side_without_a_copy(tmp_path):
    rng = np.random.default_rng(0)
    xb, xf = rng.normal(size=(300, D)), rng.normal(size=(300, D))
    (b,), (f,) = paired_caches(tmp_path, xb, xf)
    out = tmp_path / "pair" / "layer_1" / "domain.h5"
    write_paired_cache(b, f, out)
    # Relative source paths: the pair still reads after the folder moves.
    moved = tmp_path.parent / f"{tmp_path.name}_moved"
    tmp_path.rename(moved)
    with h5py.File(moved / "pair" / "layer_1" / "domain.h5", "r") as h:
        assert h["acts"].is_virtual and h["acts"].shape == (300, 2 * D)
        want = np.concatenate([xb, xf], axis=1).astype(np.float16)
        np.testing.assert_array_equal(h["acts"][:], want)
        np.testing.assert_array_equal(h["token_id"][:], np.arange(300) % 997)
        assert h.attrs["d_model"] == 2 * D and len(h["doc_ids"]) == 20


def test_paired_cache_refuses_different_tokens(tmp_path):
    x = np.zeros((200, D))
    (b,), (f,) = paired_caches(tmp_path, x, x, token_id=np.arange(200) + 1)
    with pytest.raises(TokenAlignmentError, match="same tokens"):
        write_paired_cache(b, f, tmp_path / "pair.h5")
    assert not (tmp_path / "pair.h5").exists()


def test_relative_norm_classes():
    r = np.array([0.0, 0.05, 0.5, 0.95, 1.0])
    got = classify(r, CrosscoderConfig())
    assert got.tolist() == ["base_only"] * 2 + ["shared"] + ["finetuned_only"] * 2


def test_latent_scaling_tells_a_new_latent_from_complete_shrinkage(tmp_path):
    """Latent 0 is shared; latent 1 reads direction v, which only the fine-tuned
    model has; latent 2 reads w, which BOTH models have but whose base decoder
    was driven to 0 (complete shrinkage): Latent Scaling must find w in the
    base model's reconstruction error and not find v anywhere in the base."""
    rng = np.random.default_rng(0)
    u, v, w = np.linalg.qr(rng.normal(size=(D, 3)))[0].T
    n = 3000
    a = rng.uniform(1, 2, size=(n, 3)) * (rng.random((n, 3)) < 0.3)
    noise = 0.01 * rng.normal(size=(2, n, D))
    xb = a[:, :1] * u + a[:, 2:] * w + noise[0]
    xf = a[:, :1] * u + a[:, 1:2] * v + a[:, 2:] * w + noise[1]
    source = PairedActivationSource(*paired_caches(tmp_path, xb, xf), 0.1)
    sb, sf = source.scales
    zero = np.zeros(D)
    dec = np.stack(
        [
            np.concatenate([sb * u, sf * u]),
            np.concatenate([zero, sf * v]),
            np.concatenate([zero, sf * w]),
        ]
    )
    enc = np.stack(
        [
            np.concatenate([u / sb, zero]),
            np.concatenate([zero, v / sf]),
            np.concatenate([zero, w / sf]),
        ]
    )
    cc = TopKSAE(SAEShape(2 * D, 3, 3, "topk"))
    with torch.no_grad():
        cc.W_dec.copy_(torch.from_numpy(dec))
        cc.W_enc.copy_(torch.from_numpy(enc))
    cc.eval()
    r = Halves.of(cc, D).relative_norm()
    np.testing.assert_allclose(r, [sf / (sb + sf), 1.0, 1.0], rtol=1e-5)
    got = crosscoder_scaling(cc, source, r >= 0.5, batch_size=512)
    nu_rec, nu_err = got["nu_reconstruction"], got["nu_error"]
    assert abs(nu_rec[1]) < 0.05 and abs(nu_err[1]) < 0.05  # new: absent in base
    assert abs(nu_rec[2]) < 0.05 and nu_err[2] > 0.8  # shrinkage: in base's error
    # Shared: the fine-tuned half carries it at its own scale (sf vs sb).
    assert nu_rec[0] == pytest.approx(sf / sb, rel=0.05)
    assert (got["n_tokens"] > 0).all()
