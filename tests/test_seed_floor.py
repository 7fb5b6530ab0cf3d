"""Seed floor, stability and Latent Scaling on planted cases with known truth."""

import numpy as np
import pytest
import torch
from test_compare import CFG, D, M, make_sae, permuted_copy, sparse_data, write_cache

from saeflow.compare.latent_scaling import beta_closed_form, latent_scaling
from saeflow.compare.layer import compare_layer
from saeflow.compare.matching import Assignment, null_sae
from saeflow.compare.seed_floor import (
    DecoderMatch,
    floor_summary,
    latent_means,
    seed_floor,
)
from saeflow.sae.model import TopKSAE

N_NEW = 32  # fine-tuned features replaced by new directions


def with_new_features(sae: TopKSAE, seed: int) -> TopKSAE:
    """`sae` with its first N_NEW decoder (and encoder) rows replaced by random
    directions: what the 'fine-tuned model' has and the base has not."""
    gen = torch.Generator().manual_seed(seed)
    out = TopKSAE(sae.shape)
    out.load_state_dict(sae.state_dict())
    with torch.no_grad():
        fresh = torch.nn.functional.normalize(
            torch.randn(N_NEW, D, generator=gen), dim=1
        )
        out.W_dec[:N_NEW] = fresh
        out.W_enc[:N_NEW] = fresh
    return out.eval()


def caches(tmp_path, name: str, truth: TopKSAE) -> dict[str, str]:
    acts = {}
    for corpus, seed in (("domain", 1), ("general", 2)):
        path = tmp_path / f"{name}_{corpus}.h5"
        write_cache(path, sparse_data(truth, 3000, seed), n_docs=60)
        acts[corpus] = str(path)
    return acts


def replicates(truth: TopKSAE, seeds: list[int]) -> list[TopKSAE]:
    """SAEs 'trained from other seeds': permuted, perturbed copies of the truth."""
    return [permuted_copy(truth, s)[0] for s in seeds]


def compare(base_reps, ft_reps, acts_b, acts_f):
    """As make_layer_comparison: every replicate's means, the floor, the layer."""
    null = null_sae(ft_reps[0], 7)
    means = {
        (model, r): latent_means(sae, acts, 512, None)
        for model, reps, acts in (
            ("base", base_reps, acts_b),
            ("finetuned", ft_reps, acts_f),
        )
        for r, sae in enumerate(reps)
    }
    floor = seed_floor(base_reps, ft_reps, CFG, 5, null, means)
    return compare_layer(
        base_reps[0], ft_reps[0], null, acts_b, acts_f, CFG, 0, floor=floor
    )


def test_planted_new_features_are_found_beyond_the_floor(tmp_path):
    base_truth = make_sae(0)
    ft_truth = with_new_features(base_truth, 9)
    acts_b, acts_f = caches(tmp_path, "b", base_truth), caches(tmp_path, "f", ft_truth)
    base_reps = replicates(base_truth, [1, 2])
    ft_reps = [permuted_copy(ft_truth, s) for s in (3, 4)]
    result = compare(base_reps, [r for r, _ in ft_reps], acts_b, acts_f)

    floor = result.summary["seed_floor"]
    assert floor["beyond_floor"] and floor["effect_ci"][0] > 0
    assert floor["effect"] == pytest.approx(N_NEW / M, abs=0.02)
    m = result.matches
    perm = ft_reps[0][1]  # fine-tuned replicate 0's feature j is truth row perm[j]
    planted = perm < N_NEW
    found = (m["status"] == "new").to_numpy()
    assert found[planted].mean() >= 0.9  # recall
    assert planted[found].mean() >= 0.9  # precision
    assert (m.loc[found, "nu_reconstruction"] < CFG.nu_reconstruction_max).all()
    # The base features the new ones replaced are lost, and only those.
    lost = result.lost
    assert (lost["status"] == "lost").sum() >= 0.9 * N_NEW
    assert (lost["status"] == "lost").sum() <= 1.1 * N_NEW


def test_identical_models_show_no_effect_and_nothing_new(tmp_path):
    truth = make_sae(0)
    acts = caches(tmp_path, "same", truth)
    result = compare(replicates(truth, [1, 2]), replicates(truth, [3, 4]), acts, acts)
    floor = result.summary["seed_floor"]
    lo, hi = floor["effect_ci"]
    assert lo <= 0 <= hi and not floor["beyond_floor"]
    assert result.summary["n_new"] <= 0.01 * M
    assert result.summary["n_lost"] <= 0.01 * M


def test_unstable_features_are_not_counted_as_new(tmp_path):
    """A feature that only one fine-tuned seed has is unstable, not new."""
    base_truth = make_sae(0)
    ft_truth = with_new_features(base_truth, 9)
    acts_b, acts_f = caches(tmp_path, "b", base_truth), caches(tmp_path, "f", ft_truth)
    ft0, perm = permuted_copy(ft_truth, 3)
    # The second fine-tuned seed missed the new features: it has base ones there.
    ft1 = replicates(base_truth, [4])[0]
    result = compare(replicates(base_truth, [1, 2]), [ft0, ft1], acts_b, acts_f)
    m = result.matches
    planted = perm < N_NEW
    assert (m.loc[planted, "status"] == "unstable").mean() >= 0.9
    assert result.summary["n_new"] <= 0.1 * N_NEW


def test_effect_interval_counts_the_seed_variation():
    """Cross pairs that disagree by seed widen the interval beyond the binomial."""

    class Fake:
        def __init__(self, frac: float):
            self.matched = np.arange(1000) < frac * 1000
            self.overlap, self.n_live = float(self.matched.mean()), 1000

    spread = {
        ("base", 0, "base", 1): Fake(0.60),
        ("finetuned", 0, "finetuned", 1): Fake(0.60),
        ("finetuned", 0, "base", 0): Fake(0.50),
        ("finetuned", 0, "base", 1): Fake(0.56),
        ("finetuned", 1, "base", 0): Fake(0.44),
        ("finetuned", 1, "base", 1): Fake(0.50),
    }
    tight = {**spread, **{k: Fake(0.50) for k in spread if k[0] != k[2]}}
    for pairs in (spread, tight):
        for fake in pairs.values():
            fake.threshold = 0.5
    wide, narrow = floor_summary(spread, 0.95), floor_summary(tight, 0.95)  # type: ignore[arg-type]
    assert wide["effect"] == pytest.approx(0.10) == narrow["effect"]
    assert wide["df"] == 3 and wide["seed_sd_per_pair"] > 0.04
    assert narrow["seed_sd_per_pair"] == 0.0
    assert wide["effect_ci"][0] < narrow["effect_ci"][0] < 0.10
    assert not wide["beyond_floor"] and narrow["beyond_floor"]


def test_beta_closed_form_equals_least_squares():
    gen = torch.Generator().manual_seed(0)
    n, m, d = 200, 6, 10
    f = torch.rand(n, m, generator=gen, dtype=torch.float64)
    f[f < 0.5] = 0.0
    dec = torch.randn(m, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64)
    beta = beta_closed_form(f, dec, y)
    for j in range(m):
        a = (f[:, j : j + 1, None] * dec[j]).reshape(-1, 1)  # (n·d, 1)
        ref = torch.linalg.lstsq(a, y.reshape(-1, 1)).solution.item()
        assert beta[j].item() == pytest.approx(ref, rel=1e-9)


def test_streamed_latent_scaling_equals_the_dense_formula(tmp_path):
    own, other = make_sae(0), make_sae(5)
    x_own = sparse_data(own, 700, 1)
    x_other = x_own + 0.3 * np.random.default_rng(0).standard_normal(x_own.shape)
    write_cache(tmp_path / "own.h5", x_own, n_docs=7)
    write_cache(tmp_path / "other.h5", x_other, n_docs=7)
    rows = np.arange(700)
    got = latent_scaling(
        own,
        other,
        [(tmp_path / "own.h5", rows, tmp_path / "other.h5", rows)],
        batch_size=128,
    )
    # Dense reference on what the caches hold (float16 on disk).
    xo = torch.from_numpy(x_own.astype(np.float16).astype(np.float32))
    xt = torch.from_numpy(x_other.astype(np.float16).astype(np.float32))
    with torch.no_grad():
        code = own.encode(xo)
        f = torch.zeros(len(xo), M).scatter_(1, code.idx, code.vals)
        rec_o = own.decode(code)
        rec_t = other.decode(other.encode(xt))
        dec = own.W_dec / own.scale
        own_err = beta_closed_form(f, dec, xo - rec_o) + 1.0
        other_rec = beta_closed_form(f, dec, rec_t - other.b_dec / other.scale)
    fired = got.n_tokens > 0
    assert fired.mean() > 0.9
    np.testing.assert_allclose(got.beta_own["error"][fired], own_err[fired], rtol=1e-4)
    np.testing.assert_allclose(
        got.beta_other["reconstruction"][fired], other_rec[fired], rtol=1e-4, atol=1e-6
    )
    assert np.isnan(got.nu["error"][~fired]).all()


def test_dead_latents_do_not_dilute_the_overlap():
    partner = np.array([0, 1, 2, -1, -1, -1])
    score = np.array([0.9, 0.9, 0.9, np.nan, np.nan, np.nan], np.float32)
    found = Assignment(partner, score, "dense", 36)
    live = np.array([True, True, True, True, False, False])
    match = DecoderMatch(found, found, 0.5, live)
    assert match.overlap == pytest.approx(3 / 4) and match.n_live == 4
    assert DecoderMatch(found, found, 0.5).overlap == pytest.approx(3 / 6)


def test_changed_is_a_domain_move_beyond_what_seeds_give(tmp_path):
    """The fine-tuned 'model' triples 8 features on domain text only: they are
    changed beyond the floor; on identical data nothing is."""
    truth = make_sae(0)
    boosted = np.arange(8)
    acts_b, acts_f = {}, {}
    for corpus, seed in (("domain", 1), ("general", 2)):
        x = sparse_data(truth, 3000, seed)
        xf = x.copy()
        if corpus == "domain":
            w = truth.W_dec.detach().numpy()[boosted]
            xf += 2.0 * np.clip(x @ w.T, 0, None) @ w
        for acts, data, name in ((acts_b, x, "b"), (acts_f, xf, "f")):
            write_cache(tmp_path / f"{name}_{corpus}.h5", data, n_docs=60)
            acts[corpus] = str(tmp_path / f"{name}_{corpus}.h5")
    reps = [make_sae(0), permuted_copy(truth, 1)[0]]
    result = compare(reps, [make_sae(0), permuted_copy(truth, 2)[0]], acts_b, acts_f)
    m = result.matches
    changed = set(m.loc[m["status"] == "changed", "finetuned_feature"])
    assert len(changed & set(boosted)) >= len(boosted) // 2
    floor = result.summary["changed_floor"]
    assert floor["expected_by_seed_noise"] <= 0.02 * M
    assert (m.loc[list(changed), "domain_share_move"] > floor["share_threshold"]).all()
    # The same replicates on identical data: nothing changed.
    same = compare(reps, [make_sae(0), permuted_copy(truth, 2)[0]], acts_b, acts_b)
    assert same.summary["n_changed"] == 0
