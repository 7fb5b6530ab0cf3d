"""Tests for the top-k SAE against dense references."""

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from saeflow.sae.model import EncoderOutput, SAEShape, TopKSAE

SHAPE = SAEShape(d_in=12, n_latents=40, k=5)


def data(n: int = 37, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, SHAPE.d_in, generator=gen) + 1.5


def make_sae(seed: int = 0) -> TopKSAE:
    """An SAE with non-trivial biases and scale."""
    sae = TopKSAE(SHAPE, seed=seed)
    sae.init_from_data(data(200, seed=seed + 1))
    with torch.no_grad():
        sae.b_enc.copy_(
            0.1
            * torch.randn(
                SHAPE.n_latents, generator=torch.Generator().manual_seed(seed)
            )
        )
    return sae


def dense_pre(sae: TopKSAE, x: torch.Tensor) -> torch.Tensor:
    return F.relu((x * sae.scale - sae.b_dec) @ sae.W_enc.T + sae.b_enc)


def dense_code(code: EncoderOutput, m: int) -> torch.Tensor:
    return torch.zeros(len(code.idx), m).scatter(1, code.idx, code.vals)


def test_encode_keeps_k_largest_relu_preactivations():
    sae, x = make_sae(), data()

    with torch.no_grad():
        code = sae.encode(x)
        pre = dense_pre(sae, x)

    assert code.vals.shape == code.idx.shape == (len(x), SHAPE.k)
    assert (code.vals >= 0).all()
    assert all(len(set(row.tolist())) == SHAPE.k for row in code.idx)
    assert_close(code.vals, pre.gather(1, code.idx))
    assert_close(code.vals.sort(1).values, pre.topk(SHAPE.k, 1).values.sort(1).values)


def test_decode_equals_dense_product():
    sae, x = make_sae(), data()

    with torch.no_grad():
        code = sae.encode(x)
        recon = sae.decode(code)
        dense = (dense_code(code, SHAPE.n_latents) @ sae.W_dec + sae.b_dec) / sae.scale

    assert sae.scale.item() != 1.0
    assert_close(recon, dense)


def test_forward_fvu_formula():
    sae, x = make_sae(), data()

    with torch.no_grad():
        out = sae(x)

    expected = (x - out.recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert_close(out.fvu, expected, rtol=1e-4, atol=1e-6)
    assert out.aux_loss.item() == 0.0


def test_aux_loss_zero_without_dead_latents_positive_with():
    sae, x = make_sae(), data()
    none_dead = torch.zeros(SHAPE.n_latents, dtype=torch.bool)
    some_dead = none_dead.clone()
    some_dead[::3] = True

    with torch.no_grad():
        aux_none = sae(x, none_dead, aux_k=6).aux_loss
        aux_some = sae(x, some_dead, aux_k=6).aux_loss
        aux_k0 = sae(x, some_dead, aux_k=0).aux_loss

    assert aux_none.item() == 0.0 and aux_k0.item() == 0.0
    assert aux_some.item() > 0.0


def test_aux_loss_trains_only_through_dead_latents():
    sae, x = make_sae(), data()
    dead = torch.zeros(SHAPE.n_latents, dtype=torch.bool)
    dead[:10] = True

    sae(x, dead, aux_k=4).aux_loss.backward()

    assert sae.W_enc.grad[10:].abs().sum() == 0
    assert sae.W_enc.grad[:10].abs().sum() > 0


def test_aux_loss_reaches_latents_that_never_fire():
    """A dead latent's pre-activation is negative on every token; AuxK must still
    give its encoder row a gradient, or it can never come back."""
    sae, x = make_sae(), data()
    with torch.no_grad():
        sae.b_enc[:10] = -20.0
    dead = torch.zeros(SHAPE.n_latents, dtype=torch.bool)
    dead[:10] = True

    sae(x, dead, aux_k=4).aux_loss.backward()

    assert (sae.W_enc.grad[:10].abs().sum(1) > 0).all()
    assert (sae.b_enc.grad[:10] != 0).all()


def test_aux_loss_dense_and_sparse_decodes_agree(monkeypatch):
    """Few dead latents decode AuxK with a dense matmul, many with sparse_decode:
    same loss, same gradients."""
    x = data()
    dead = torch.zeros(SHAPE.n_latents, dtype=torch.bool)
    dead[::2] = True  # 20 dead, aux_k 4: dense at factor 5, sparse at factor 4

    def loss_and_grads(factor: int) -> list[torch.Tensor]:
        monkeypatch.setattr("saeflow.sae.model.AUX_DENSE_FACTOR", factor)
        sae = make_sae()
        aux = sae(x, dead, aux_k=4).aux_loss
        aux.backward()
        return [aux.detach()] + [p.grad for p in (sae.W_enc, sae.b_enc, sae.W_dec)]

    dense, sparse = loss_and_grads(5), loss_and_grads(4)

    assert dense[0] > 0
    for a, b in zip(dense, sparse, strict=True):
        assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_constrained_steps_keep_decoder_rows_unit_norm():
    torch.manual_seed(0)
    sae, x = make_sae(), data()
    opt = torch.optim.Adam(sae.parameters(), lr=0.05)

    for _ in range(5):
        sae(x).fvu.backward()
        sae.project_decoder_grad()
        along = (sae.W_dec.grad * sae.W_dec).sum(1)
        assert_close(along, torch.zeros_like(along), atol=1e-6, rtol=0)
        opt.step()
        opt.zero_grad()
        sae.renormalize_decoder()
        norms = sae.W_dec.norm(dim=1)
        assert_close(norms, torch.ones_like(norms))


def test_decoder_grad_projection_in_row_chunks_equals_whole_matrix(monkeypatch):
    """Chunks of 3 rows (a last, shorter one too) give the whole-matrix
    formula's bits."""
    sae = make_sae()
    grad = torch.randn_like(sae.W_dec)
    w = sae.W_dec.detach()
    want = grad - (grad * w).sum(1, keepdim=True) * w
    monkeypatch.setattr("saeflow.sae.model.PROJECT_CHUNK_ELEMS", 3 * w.shape[1])
    assert w.shape[0] % 3, "the case needs a partial last chunk"
    sae.W_dec.grad = grad.clone()
    sae.project_decoder_grad()
    assert torch.equal(sae.W_dec.grad, want)


def test_init_from_data_sets_scale_and_bias():
    sae, x = TopKSAE(SHAPE), data(500)

    sae.init_from_data(x)

    xs = x * sae.scale
    assert_close(sae.b_dec.detach(), xs.mean(0))
    assert_close(xs.pow(2).sum(1).mean(), torch.tensor(float(SHAPE.d_in)))


def test_save_load_round_trip(tmp_path):
    sae, x = make_sae(), data()

    sae.save(tmp_path / "sae")
    loaded = TopKSAE.load(tmp_path / "sae")

    assert loaded.shape == SHAPE
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == [
        "cfg.json",
        "sae.safetensors",
    ]
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    with torch.no_grad():
        assert torch.equal(loaded(x).recon, sae(x).recon)


def test_autocast_runs_the_sparse_path_in_its_dtype():
    """Custom kernels are not autocast ops: the SAE casts for them."""
    sae = make_sae()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sae(data())
    assert out.code.vals.dtype == torch.bfloat16
    out.fvu.backward()
    assert sae.W_enc.grad.dtype == sae.W_dec.grad.dtype == torch.float32
    exact = sae.encode(data())
    assert (out.code.idx == exact.idx).float().mean() > 0.9
    assert_close(out.code.vals.float(), exact.vals, rtol=0.05, atol=0.05)
