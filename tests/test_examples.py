"""Examples per feature, checked against brute force on a tiny activation cache:
top contexts, window activations, split disjointness, negatives that never fire."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from saeflow.examples.collect import (
    EXAMPLE_COLUMNS,
    ExampleConfig,
    collect_examples,
    iter_examples,
    load_examples,
    make_examples,
    open_corpus,
)
from saeflow.sae.model import SAEShape, TopKSAE

D, M, K = 8, 12, 3
CFG = ExampleConfig(
    n_top=4,
    n_quantiles=3,
    per_quantile=2,
    n_negative_random=3,
    n_negative_similar=3,
    reservoir=30,
    before=3,
    after=2,
    batch_size=7,  # many small batches exercise the streaming merges
)


def write_cache(path, n_docs: int, seed: int) -> None:
    """A cache in saeflow's HDF5 layout: docs of 3–9 tokens, some in 2 windows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 10, n_docs)
    doc = np.repeat(np.arange(n_docs), lengths)
    window = np.concatenate([(np.arange(n) >= 6).astype(np.int16) for n in lengths])
    pos = np.concatenate([np.arange(n) for n in lengths])
    with h5py.File(path, "w") as f:
        f["acts"] = rng.normal(size=(len(doc), D)).astype(np.float16)
        f["doc"] = doc.astype(np.int32)
        f["window"] = window
        f["pos"] = pos.astype(np.int16)
        f["token_id"] = rng.integers(1000, 1030, len(doc)).astype(np.int32)
        f["doc_ids"] = np.asarray([f"d{seed}-{i}" for i in range(n_docs)], object)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, bert_tokenizer_dir):
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("examples")
    write_cache(tmp / "domain.h5", 25, seed=1)
    write_cache(tmp / "general.h5", 20, seed=2)
    sae = TopKSAE(SAEShape(D, M, K), seed=0)
    sae.save(tmp / "sae")
    corpora = [open_corpus(c, tmp / f"{c}.h5") for c in ("domain", "general")]
    tok = AutoTokenizer.from_pretrained(bert_tokenizer_dir)
    df = collect_examples(sae, corpora, tok, CFG, seed=0)
    return tmp, sae, corpora, tok, df


def dense(sae, corpora) -> np.ndarray:
    """[N_total, M] every feature's activation on every row, all at once."""
    x = np.concatenate([h5py.File(c.path)["acts"][:] for c in corpora])
    code = sae.encode(torch.from_numpy(x.astype(np.float32)))
    out = torch.zeros(len(x), M).scatter(1, code.idx, code.vals)
    return out.detach().numpy()


def global_rows(df, corpora) -> np.ndarray:
    offset = {"domain": 0, "general": len(corpora[0].doc)}
    return df["row"].to_numpy() + df["corpus"].map(offset).to_numpy()


def test_top_examples_equal_brute_force(setup):
    _, sae, corpora, _, df = setup
    acts = dense(sae, corpora)
    docs = np.r_[corpora[0].doc, corpora[1].doc + len(corpora[0].doc_ids)]
    for f in range(M):
        # Per document its peak (lowest row on ties), then the n highest peaks.
        rows = [
            (-acts[r, f], r)
            for d in np.unique(docs)
            for r in [np.flatnonzero(docs == d)[np.argmax(acts[docs == d, f])]]
            if acts[r, f] > 0
        ]
        expected = [r for _, r in sorted(rows)[: CFG.n_top]]
        got = df[(df.feature == f) & (df.kind == "top")]
        assert list(global_rows(got, corpora)) == expected
        np.testing.assert_allclose(got["activation"], acts[expected, f], rtol=1e-5)


def test_window_activations_and_tokens_match_the_cache(setup):
    _, sae, corpora, tok, df = setup
    acts = dense(sae, corpora)
    token_id = np.r_[corpora[0].token_id, corpora[1].token_id]
    for ex in df.sample(40, random_state=0).itertuples():
        g = global_rows(pd.DataFrame([ex._asdict()]), corpora)[0]
        rows = np.arange(g - ex.peak, g - ex.peak + len(ex.tokens))
        np.testing.assert_allclose(ex.acts, acts[rows, ex.feature], rtol=1e-5)
        assert ex.tokens == [tok.decode([t]) for t in token_id[rows]]
        assert 0 <= ex.peak < len(ex.tokens) <= CFG.before + CFG.after + 1


def test_windows_stay_inside_one_document_window(setup):
    _, _, corpora, _, df = setup
    for ex in df.itertuples():
        c = corpora[0] if ex.corpus == "domain" else corpora[1]
        first = ex.row - ex.peak
        assert c.seg_start[ex.row] <= first
        assert first + len(ex.tokens) <= c.seg_stop[ex.row]
        assert ex.doc_id == c.doc_ids[c.doc[ex.row]]


def test_explain_and_score_examples_share_no_document(setup):
    df = setup[-1]
    for _, g in df.groupby("feature"):
        docs = g["corpus"] + "/" + g["doc_id"]
        explain, score = set(docs[g.split == "explain"]), set(docs[g.split == "score"])
        assert explain and score and not explain & score
    assert set(df[df.split == "explain"].kind) == {"top"}


def test_negatives_have_zero_activation_on_every_token(setup):
    _, sae, corpora, _, df = setup
    acts = dense(sae, corpora)
    neg = df[df.kind.str.startswith("negative")]
    # A feature fires on k/M = 1/4 of tokens here, so some windows are rejected.
    assert len(neg[neg.kind == "negative_random"]) > M * CFG.n_negative_random // 2
    assert (neg.groupby(["feature", "kind"]).size() <= 3).all()
    for ex in neg.itertuples():
        g = global_rows(pd.DataFrame([ex._asdict()]), corpora)[0]
        rows = np.arange(g - ex.peak, g - ex.peak + len(ex.tokens))
        assert (acts[rows, ex.feature] == 0).all() and ex.activation == 0


def test_similar_negatives_centre_on_a_top_token(setup):
    _, _, corpora, _, df = setup
    token_id = np.r_[corpora[0].token_id, corpora[1].token_id]
    similar = df[df.kind == "negative_similar"]
    assert len(similar) > 0
    for f, g in similar.groupby("feature"):
        top = df[(df.feature == f) & (df.kind == "top")]
        top_tokens = set(token_id[global_rows(top, corpora)])
        assert set(token_id[global_rows(g, corpora)]) <= top_tokens


def test_quantile_examples_are_active_and_spread_over_bins(setup):
    df = setup[-1]
    q = df[df.kind == "quantile"]
    assert (q["activation"] > 0).all()
    assert set(q["quantile"].round(3)) <= {0.333, 0.667, 1.0}
    assert df[df.kind != "quantile"]["quantile"].isna().all()
    assert q.groupby("feature")["quantile"].nunique().max() == CFG.n_quantiles


def test_make_examples_writes_the_documented_table(setup, bert_tokenizer_dir):
    tmp, *_ = setup
    out = tmp / "out" / "examples.parquet"
    acts = {c: str(tmp / f"{c}.h5") for c in ("domain", "general")}
    make_examples(tmp / "sae", acts, str(bert_tokenizer_dir), CFG, 0, "cpu", out)
    df = load_examples(out)
    assert list(df.columns) == EXAMPLE_COLUMNS
    assert set(df.kind) == {"top", "quantile", "negative_random", "negative_similar"}
    again = tmp / "again.parquet"
    make_examples(tmp / "sae", acts, str(bert_tokenizer_dir), CFG, 0, "cpu", again)
    pd.testing.assert_frame_equal(df, load_examples(again))  # deterministic
    assert set(load_examples(out, features=[2, 5]).feature) == {2, 5}


def test_feature_blocks_give_the_one_pass_table(setup):
    _, sae, corpora, tok, df = setup
    blocks = list(iter_examples(sae, corpora, tok, CFG, seed=0, block=5))
    assert [sorted(set(b.feature)) for b in blocks][0] == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True), df)


def test_similar_pool_draws_a_bounded_sample(setup, monkeypatch):
    from saeflow.examples import collect

    _, _, corpora, _, _ = setup
    rows = collect._stack_rows(corpora)
    wanted = np.array([1003, 1011])
    every = collect._similar_pool(rows, wanted, np.random.default_rng(0))
    assert sorted(every) == sorted(np.flatnonzero(np.isin(rows.token_id, wanted)))
    monkeypatch.setattr(collect, "SIMILAR_POOL", 5)
    some = collect._similar_pool(rows, wanted, np.random.default_rng(0))
    assert len(some) == len(set(some)) == 5 and set(some) <= set(every)


def test_cache_without_token_ids_is_named(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["acts"] = np.zeros((2, D), np.float16)
    with pytest.raises(ValueError, match="bad.h5.*doc"):
        open_corpus("domain", tmp_path / "bad.h5")
