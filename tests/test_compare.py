"""Base vs fine-tuned comparison on cases where the truth is known: an SAE against
itself, against a permuted and perturbed copy, against an unrelated random SAE;
transfer FVU; token alignment; the assignment's dense and sparse paths."""

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from saeflow.compare.coactivation import (
    Codes,
    TokenAlignmentError,
    align_tokens,
    auto_max_tokens,
    cooccurrence_blocks,
    correlation_blocks,
    encode_rows,
    moments,
    subsample_docs,
)
from saeflow.compare.layer import (
    LOST_STATUSES,
    STATUSES,
    choose_null,
    compare_layer,
)
from saeflow.compare.matching import (
    TopCandidates,
    assign,
    bootstrap_fraction,
    cosine_blocks,
    null_sae,
)
from saeflow.compare.reports import comparison_reports, transfer_fvu
from saeflow.sae.data import ActivationSource
from saeflow.sae.model import SAEShape, TopKSAE
from saeflow.sae.trainer import evaluate
from saeflow.workflow.config import CompareConfig, ConfigError, resolve_layers

D, M, K = 32, 256, 4
CFG = CompareConfig(n_bootstrap=50, top_n=10, batch_size=512)


def make_sae(seed: int) -> TopKSAE:
    """A random top-k SAE whose encoder is its decoder (features fire sensibly)."""
    sae = TopKSAE(SAEShape(D, M, K), seed=seed)
    with torch.no_grad():
        sae.b_enc.fill_(0.0)
    return sae.eval()


def sparse_data(sae: TopKSAE, n: int, seed: int) -> np.ndarray:
    """Tokens made of K of the SAE's own decoder directions plus a little noise."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(M, generator=gen)[:K] for _ in range(n)])
    vals = 1.0 + torch.rand(n, K, generator=gen)
    x = (vals[..., None] * sae.W_dec.detach()[idx]).sum(1)
    return (x + 0.05 * torch.randn(n, D, generator=gen)).numpy()


def write_cache(path, acts: np.ndarray, n_docs: int, token_id=None) -> None:
    """An activation cache like saeflow.activations.cache writes: acts, doc, window,
    pos, token_id, doc_ids."""
    n = len(acts)
    doc = np.repeat(np.arange(n_docs), int(np.ceil(n / n_docs)))[:n]
    pos = np.concatenate([np.arange((doc == d).sum()) for d in range(n_docs)])
    with h5py.File(path, "w") as f:
        f.create_dataset("acts", data=acts.astype(np.float16), chunks=(64, D))
        f.create_dataset("doc", data=doc.astype(np.int32))
        f.create_dataset("window", data=np.zeros(n, np.int16))
        f.create_dataset("pos", data=pos.astype(np.int16))
        tid = np.arange(n) % 997 if token_id is None else token_id
        f.create_dataset("token_id", data=np.asarray(tid, np.int32))
        f.create_dataset(
            "doc_ids",
            data=np.array([f"d{i}" for i in range(n_docs)], dtype=object),
            dtype=h5py.string_dtype(),
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A base SAE and the activations of 'both models' (the same activations)."""
    tmp = tmp_path_factory.mktemp("cmp")
    base = make_sae(0)
    acts = {}
    for corpus, seed in (("domain", 1), ("general", 2)):
        path = tmp / f"{corpus}.h5"
        write_cache(path, sparse_data(base, 3000, seed), n_docs=60)
        acts[corpus] = str(path)
    return base, acts


def permuted_copy(sae: TopKSAE, seed: int) -> tuple[TopKSAE, np.ndarray]:
    """The SAE with latents permuted, encoder rows rescaled (×0.8-1.25), decoder
    rows noised and the signs of their two smallest coordinates flipped."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(M, generator=gen)
    copy = TopKSAE(sae.shape, seed=seed)
    copy.load_state_dict(sae.state_dict())
    scale = 0.8 + 0.45 * torch.rand(M, 1, generator=gen)
    with torch.no_grad():
        w_dec = sae.W_dec[perm] + 0.05 * torch.randn(M, D, generator=gen)
        small = w_dec.abs().argsort(dim=1)[:, :2]
        w_dec.scatter_(1, small, -w_dec.gather(1, small))
        copy.W_dec.copy_(torch.nn.functional.normalize(w_dec, dim=1))
        copy.W_enc.copy_(sae.W_enc[perm] * scale)
        copy.b_enc.copy_(sae.b_enc[perm] * scale[:, 0])
    # Fine-tuned feature j is base feature perm[j].
    return copy.eval(), perm.numpy()


def run(base, other, acts, cfg=CFG):
    return compare_layer(base, other, null_sae(other, 7), acts, acts, cfg, seed=0)


def test_sae_against_itself_matches_everything(setup):
    base, acts = setup
    result = run(base, base, acts)
    m = result.matches
    assert (m["base_feature"] == m["finetuned_feature"]).all()
    assert m["matched"].all() and result.summary["decoder"]["overlap"] == 1.0
    assert np.allclose(m["decoder_cosine"], 1.0, atol=1e-5)
    live = m["finetuned_frac_active"] > 0
    assert live.mean() > 0.9
    assert np.allclose(m.loc[live, "activation_correlation"], 1.0, atol=1e-4)
    assert m.loc[live, "activation_matched"].all()
    assert (m["activation_partner"][live] == m["finetuned_feature"][live]).all()
    assert set(m["status"]) == {"matched"} and len(result.lost) == 0
    assert np.allclose(m["domain_delta"], 0.0) and np.allclose(
        m["specialization_delta"], 0.0
    )


def test_permuted_perturbed_copy_recovers_the_permutation(setup):
    base, acts = setup
    copy, perm = permuted_copy(base, seed=3)
    m = run(base, copy, acts).matches
    assert np.array_equal(m["base_feature"].to_numpy(), perm)
    assert m["matched"].all()
    live = m["finetuned_frac_active"] > 0
    assert np.array_equal(m["activation_partner"][live].to_numpy(), perm[live])
    assert m.loc[live, "activation_matched"].all()


def test_unrelated_sae_overlap_within_the_null(setup):
    base, acts = setup
    result = run(base, make_sae(11), acts)
    q = CFG.null_quantile
    # Null draws exceed the threshold with probability 1 - q: allow 3 sd.
    bound = (1 - q) + 3 * np.sqrt(q * (1 - q) / M)
    assert result.summary["decoder"]["overlap"] <= bound
    assert result.summary["activation"]["overlap"] <= bound
    assert result.summary["n_unmatched_finetuned"] >= M * (1 - bound)
    assert len(result.lost) == M - result.matches["matched"].sum()
    # Both "models" read the same activations: Latent Scaling finds every
    # unmatched direction in the other model, so none is new.
    assert result.summary["n_new"] == 0
    assert result.summary["n_present_in_base"] >= M * (1 - bound)


def moved_from(init: TopKSAE, seed: int, step: float = 0.5) -> TopKSAE:
    """`init` after a short, data-unrelated 'training': random row displacements."""
    sae = TopKSAE(init.shape)
    sae.load_state_dict(init.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.add_(step * torch.randn(M, D, generator=gen) / D**0.5)
        sae.renormalize_decoder()
        sae.W_enc.add_(step * torch.randn(M, D, generator=gen) / D**0.5)
    return sae.eval()


def test_a_shared_training_init_is_not_counted_as_shared_features(setup):
    """Two SAEs that left the same init in unrelated directions: a plain random
    null calls nearly everything matched; the shared-init null does not."""
    _, acts = setup
    init = make_sae(0)  # what train_sae starts from with seed 0
    base, ft = moved_from(init, 1), moved_from(init, 2)
    null, info = choose_null(base, ft, init_seeds=(0, 0), seed=3)
    assert info["shared_init"] and info["median_cosine_to_init"]["base"] > 0.8
    result = compare_layer(base, ft, null, acts, acts, CFG, 0)
    q = CFG.null_quantile
    bound = (1 - q) + 3 * np.sqrt(q * (1 - q) / M)
    assert result.summary["decoder"]["overlap"] <= bound
    assert result.summary["activation"]["overlap"] <= bound
    naive = compare_layer(base, ft, null_sae(ft, 3), acts, acts, CFG, 0)
    assert naive.summary["decoder"]["overlap"] > 0.9  # the artefact avoided above


def test_no_shared_init_between_unrelated_saes():
    _, info = choose_null(make_sae(0), make_sae(11), init_seeds=(0, 0), seed=3)
    assert not info["shared_init"] and info["kind"] == "random features"


def test_independent_init_seeds_need_no_shared_init_null():
    init = make_sae(0)
    _, info = choose_null(moved_from(init, 1), moved_from(init, 2), (0, 1000), 3)
    assert not info["shared_init"] and "median_cosine_to_init" not in info


def test_contract_columns_and_types(setup):
    base, acts = setup
    copy, _ = permuted_copy(base, seed=4)
    result = run(base, copy, acts)
    m = result.matches
    assert len(m) == M and list(m["finetuned_feature"]) == list(range(M))
    assert pd.api.types.is_integer_dtype(m["base_feature"])
    assert m["base_feature"].min() >= -1
    for col in ("decoder_cosine", "activation_correlation"):
        assert pd.api.types.is_float_dtype(m[col])
    assert m["matched"].dtype == bool
    assert set(m["status"]) <= set(STATUSES)
    assert (m["status"].isin(["matched", "changed"]) == m["matched"]).all()
    for col in ("nu_reconstruction", "nu_error", "ls_beta_base_error"):
        assert pd.api.types.is_float_dtype(m[col])
    assert set(result.lost["status"]) <= set(LOST_STATUSES)
    assert list(result.lost.columns[:2]) == ["base_feature", "finetuned_feature"]
    assert len(result.top) == CFG.top_n and result.top["rank"].iloc[0] == 1


def test_changed_features_are_the_ones_whose_domain_activity_moved(tmp_path):
    """Fine-tuned 'model': the domain activations of a few features tripled."""
    base = make_sae(0)
    boosted = np.arange(8)
    acts_b, acts_f = {}, {}
    for corpus, seed in (("domain", 1), ("general", 2)):
        x = sparse_data(base, 3000, seed)
        xf = x.copy()
        if corpus == "domain":
            w = base.W_dec.detach().numpy()[boosted]
            xf += 2.0 * np.clip(x @ w.T, 0, None) @ w  # boost those directions
        for acts, data, name in ((acts_b, x, "b"), (acts_f, xf, "f")):
            path = tmp_path / f"{name}_{corpus}.h5"
            write_cache(path, data, n_docs=60)
            acts[corpus] = str(path)
    m = compare_layer(base, base, null_sae(base, 7), acts_b, acts_f, CFG, 0).matches
    changed = set(m.loc[m["status"] == "changed", "finetuned_feature"])
    assert changed and changed <= set(range(M))
    assert len(changed & set(boosted)) >= len(boosted) // 2
    assert (m.loc[list(changed & set(boosted)), "domain_delta_lo"] > 0).all()
    # Others may be crowded out of the top k (they moved down): still outside 0.
    rows = m.loc[list(changed)]
    assert ((rows["domain_delta_lo"] > 0) | (rows["domain_delta_hi"] < 0)).all()
    assert (m.loc[m["status"] == "changed", "matched"]).all()


def test_transfer_fvu_of_an_sae_on_its_own_activations_is_its_own_fvu(setup):
    base, acts = setup
    paths = list(acts.values())
    own = evaluate(base, ActivationSource(paths, 0.1), 512).fvu
    out = transfer_fvu(base, make_sae(5), paths, paths, 0.1, 512)
    assert out["fvu_base_own"] == pytest.approx(own, rel=1e-9)
    # Both "models" have the same activations: transfer = own.
    assert out["fvu_transfer"] == pytest.approx(own, rel=1e-9)


@pytest.mark.parametrize("dense", [True, False])
def test_assignment_recovers_a_permutation(dense):
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.normalize(torch.randn(300, 24, generator=gen), dim=1)
    perm = torch.randperm(300, generator=gen)
    ft = base[perm] + 0.05 * torch.randn(300, 24, generator=gen)
    a = assign(cosine_blocks(ft, base, 64), 300, 300, dense, candidates=4)
    assert np.array_equal(a.partner, perm.numpy())
    assert a.method == ("dense" if dense else "sparse")


def test_sparse_assignment_is_near_the_dense_optimum():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 16, generator=gen), torch.randn(300, 16, generator=gen)
    dense = assign(cosine_blocks(a, b, 128), 400, 300, True, 8)
    sparse = assign(cosine_blocks(a, b, 128), 400, 300, False, 8)
    assert (dense.partner >= 0).sum() <= 300 and (sparse.partner >= 0).sum() <= 300
    assert len(set(sparse.partner[sparse.partner >= 0])) == (sparse.partner >= 0).sum()
    gap = np.nansum(dense.score) - np.nansum(sparse.score)
    assert 0 <= gap < 0.01 * np.nansum(dense.score)


def test_top_candidates_equal_the_full_top_k():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(50, 70, generator=gen)
    top = TopCandidates(50, 70, 5)
    for r0 in range(0, 50, 16):
        for c0 in range(0, 70, 30):
            top.add(r0, c0, scores[r0 : r0 + 16, c0 : c0 + 30])
    assert torch.equal(top.row_idx, scores.topk(5, dim=1).indices)
    assert torch.equal(top.col_idx, scores.T.topk(5, dim=1).indices)
    rows, cols, vals = top.edges()
    assert np.allclose(vals, scores.numpy()[rows, cols])


def test_null_sae_has_the_base_statistics():
    base = make_sae(0)
    with torch.no_grad():
        base.W_dec.add_(torch.linspace(0, 1, D))  # a shared direction: anisotropy
        base.renormalize_decoder()
    null = null_sae(base, 3)
    assert torch.allclose(null.W_dec.mean(0), base.W_dec.mean(0), atol=0.03)
    assert not torch.equal(null.W_dec, base.W_dec)
    assert torch.allclose(null.W_dec.norm(dim=1), torch.ones(M))


def test_bootstrap_fraction_interval():
    rng = np.random.default_rng(0)
    lo, hi = bootstrap_fraction(np.arange(1000) < 300, 500, 0.95, rng)
    assert lo < 0.3 < hi and hi - lo < 0.07
    assert bootstrap_fraction(np.ones(10, bool), 100, 0.95, rng) == (1.0, 1.0)


def test_identical_caches_align_row_for_row(setup):
    _, acts = setup
    al = align_tokens(acts["domain"], acts["domain"], 0.9)
    assert al.report["identical"] and np.array_equal(al.base_rows, al.finetuned_rows)


def test_diverging_tokenisation_drops_the_rest_of_the_window(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, D))
    tid = np.arange(200)
    write_cache(tmp_path / "b.h5", x, n_docs=4, token_id=tid)
    other = tid.copy()
    other[60] = -5  # doc 1 (rows 50-99) diverges at its 11th token
    write_cache(tmp_path / "f.h5", x, n_docs=4, token_id=other)
    al = align_tokens(tmp_path / "b.h5", tmp_path / "f.h5", 0.5)
    assert not al.report["identical"] and al.report["n_aligned"] == 160
    assert set(range(60, 100)).isdisjoint(al.base_rows)
    assert np.array_equal(al.base_rows, al.finetuned_rows)


def test_different_tokenizers_are_refused_with_a_clear_error(tmp_path):
    x = np.zeros((100, D))
    write_cache(tmp_path / "b.h5", x, n_docs=2, token_id=np.arange(100))
    write_cache(tmp_path / "f.h5", x, n_docs=2, token_id=np.arange(100) + 1)
    with pytest.raises(TokenAlignmentError, match="same token at only 0.0%"):
        align_tokens(tmp_path / "b.h5", tmp_path / "f.h5", 0.9)


def test_comparison_reports_combine_layers(setup):
    base, acts = setup
    copy, _ = permuted_copy(base, seed=5)
    layers, transfers, tops = {}, {}, {}
    paths = list(acts.values())
    for layer, other in ((1, base), (2, copy)):
        r = run(base, other, acts)
        layers[layer], tops[layer] = r.summary, r.top.copy()
        transfers[layer] = transfer_fvu(base, other, paths, paths, 0.1, 512)
    rep = comparison_reports(layers, transfers, tops, 15, {"note": "test"})
    assert list(rep.overlap["layer"]) == [1, 2] and len(rep.top) == 15
    assert rep.summary["overlap_first_layer"] == 1.0
    assert rep.summary["layers"] == [1, 2] and "definitions" in rep.summary
    assert "base_sae_in_finetuned_recovered" not in rep.overlap
    # The splice stage's base SAE in the fine-tuned model joins per layer.
    spliced = {
        layer: {"conditions": {"sae": {"fraction_recovered": f, "accuracy": 0.9}}}
        for layer, f in ((1, 0.8), (2, 0.4))
    }
    rep = comparison_reports(layers, transfers, tops, 15, {}, spliced)
    assert list(rep.overlap["base_sae_in_finetuned_recovered"]) == [0.8, 0.4]
    assert rep.summary["spliced_base_into_finetuned"]["2"] == spliced[2]


@pytest.mark.parametrize(
    ("preset", "layers"),
    [
        ("complete", [2, 4, 6]),
        ("fast", [4, 6]),
        ("single", [6]),
        ([4], [4]),
        (["6", "2"], [2, 6]),
        (4, [4]),
        ("2,6", [2, 6]),
    ],
)
def test_presets_choose_layers(preset, layers):
    assert resolve_layers(preset, [2, 4, 6]) == layers


@pytest.mark.parametrize("preset", [[7], "fats", []])
def test_bad_presets_name_the_key(preset):
    with pytest.raises(ConfigError, match="invalid config at key 'preset'"):
        resolve_layers(preset, [2, 4, 6])


@pytest.mark.parametrize("method", ["scatter", "gemm"])
def test_cooccurrence_and_correlation_equal_dense_references(method):
    rng = np.random.default_rng(0)
    n, m, k = 700, 90, 6

    def codes():
        idx = np.stack([rng.choice(m, k, replace=False) for _ in range(n)])
        val = rng.random((n, k)).astype(np.float32)
        val[val < 0.3] = 0  # fewer than k active on some tokens
        mat = sp.csr_matrix((val.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)))
        mat.eliminate_zeros()
        return Codes(sp.csr_matrix(mat, shape=(n, m)))

    f, b = codes(), codes()
    # gemm: 2,000 entries of C handed out at a time, one token pass per 5,000
    blocks = cooccurrence_blocks(
        f, b, method, "cpu", block_entries=500, yield_entries=2000, gemm_entries=5000
    )
    got = np.zeros((m, m))
    for r0, c0, block in blocks:
        got[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]] = block.numpy()
    assert np.allclose(got, (f.mat.T @ b.mat).toarray(), atol=1e-5)
    corr = np.zeros((m, m))
    for _, c0, block in correlation_blocks(
        f, b, moments(f.mat), moments(b.mat), method, "cpu"
    ):
        corr[:, c0 : c0 + block.shape[1]] = block.numpy()
    ref = np.corrcoef(f.mat.toarray().T, b.mat.toarray().T)[:m, m:]
    assert np.allclose(corr, ref, atol=1e-5)


def test_auto_token_cap_bounds_codes_and_spares_the_default_run():
    budget = 1 << 30
    per_corpus = auto_max_tokens(192, 2, budget)
    assert 2 * per_corpus * 48 * 192 <= budget < 2 * (per_corpus + 1) * 48 * 192
    # The default run (k = 32, ~49 k and ~80 k aligned tokens) is not capped.
    assert auto_max_tokens(32, 2) > 80_000


def test_encode_rows_reads_any_subset_in_any_order(setup):
    base, acts = setup
    rows = np.array([2999, 5, 5, 1200, 0])
    (codes,) = encode_rows([base], acts["domain"], rows, batch_size=256)
    with h5py.File(acts["domain"], "r") as f:
        x = torch.from_numpy(f["acts"][:].astype(np.float32))[rows]
    code = base.encode(x)
    dense = torch.zeros(len(rows), M).scatter_add_(1, code.idx, code.vals)
    assert np.allclose(codes.mat.toarray(), dense.detach().numpy(), atol=1e-5)


def test_max_tokens_keeps_whole_documents(setup):
    _, acts = setup
    al = align_tokens(acts["general"], acts["general"], 0.9)
    cut = subsample_docs(al, 1000, np.random.default_rng(0))
    assert 0 < len(cut.doc) <= 1000 and cut.report["n_used"] == len(cut.doc)
    kept = np.unique(cut.doc)
    assert len(cut.doc) == np.isin(al.doc, kept).sum()  # every token of a kept doc
