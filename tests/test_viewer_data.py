"""The viewer's data builders on small real files: partner matching, delta vs
base, histograms, per-headline top features, and which run `saeflow view` picks."""

import os

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.sae.model import SAEShape, TopKSAE
from saeflow.viewer.data import feature_histograms, feature_table, make_viewer_examples
from saeflow.viewer.headlines import _doc_batches, headline_features
from saeflow.viewer.store import NoViewerData, find_run


def spec(m: int, specialization: list[float]) -> pd.DataFrame:
    cols = ["mean_activation", "max_activation", "frac_active"]
    df = pd.DataFrame({"feature": np.arange(m)[::-1]})  # unsorted on purpose
    for c in cols:
        df[f"{c}_domain"] = df[f"{c}_general"] = 0.5
    df["specialization"] = np.asarray(specialization)[df["feature"]]
    return df


MATCHES = pd.DataFrame(
    {
        "finetuned_feature": [0, 1, 2],
        "base_feature": [2, -1, 2],
        "decoder_cosine": [0.9, 0.1, 0.95],
        "activation_correlation": [0.8, 0.0, 0.7],
        "matched": [True, False, True],
        "status": ["matched", "new", "changed"],
    }
)


def test_finetuned_partners_and_delta_vs_base():
    t = feature_table(
        "finetuned", 1, spec(3, [1.0, 2.0, 3.0]), spec(3, [0.5, 0.0, 0.25]), MATCHES
    )
    assert list(t["feature"]) == [0, 1, 2]
    assert list(t["partner"]) == [2, -1, 2]
    assert list(t["status"]) == ["matched", "new", "changed"]
    # a match's specialization is subtracted; no match counts the base as 0
    assert t["delta_vs_base"].tolist() == pytest.approx([0.75, 2.0, 2.75])
    new_with_nearest = MATCHES.assign(base_feature=[2, 0, 2])
    t = feature_table(
        "finetuned",
        1,
        spec(3, [1.0, 2.0, 3.0]),
        spec(3, [0.5, 0, 0.25]),
        new_with_nearest,
    )
    assert t.loc[1, "partner"] == 0 and t.loc[1, "delta_vs_base"] == 2.0


def test_base_partner_is_best_cosine_and_labels_join():
    labels = pd.DataFrame(
        {
            "model": ["base", "base", "finetuned"],
            "layer": [1, 2, 1],
            "feature": [2, 2, 2],
            "label": ["tickers", "other layer", "other model"],
            "score": [0.7, 0.1, 0.2],
        }
    )
    t = feature_table("base", 1, spec(3, [0, 0, 0]), None, MATCHES, labels)
    assert list(t["partner"]) == [-1, -1, 2]  # ft 2 has the higher cosine
    assert t.loc[2, "decoder_cosine"] == pytest.approx(0.95)
    assert t.loc[2, "label"] == "tickers" and t.loc[2, "label_score"] == 0.7
    assert t["delta_vs_base"].isna().all()
    assert t.loc[0, "status"] == "unmatched"


def test_feature_table_shows_every_features_token_pattern_and_the_label_scores():
    labels = pd.DataFrame(
        {
            "model": ["finetuned"] * 2,
            "layer": [1, 1],
            "feature": [0, 2],
            "label": ["dividend payouts", None],
            "score": [0.7, None],
            "pattern_label": ["dividend / payout", "court / ruling"],
            "shown_label_source": ["llm", "pattern"],
            "embedding_auroc": [0.8, None],
            "pattern_label_embedding_auroc": [0.6, 0.7],
        }
    )
    patterns = pd.DataFrame(
        {
            "model": ["finetuned"] * 3 + ["base"],
            "layer": [1, 1, 1, 1],
            "feature": [0, 1, 2, 1],
            "pattern_label": ["ignored", "quarter / eps", "ignored", "base only"],
            "lift_tokens": [""] * 4,
        }
    )
    t = feature_table(
        "finetuned", 1, spec(3, [0, 0, 0]), labels=labels, patterns=patterns
    )
    assert t["pattern_label"].tolist() == [
        "dividend / payout",
        "quarter / eps",
        "court / ruling",
    ]
    assert t.loc[0, "embedding_auroc"] == 0.8
    assert t.loc[2, "shown_label_source"] == "pattern"
    assert t["shown_label_source"].isna()[1]


def test_without_comparison_or_labels_columns_are_empty():
    t = feature_table("finetuned", 1, spec(2, [1.0, 2.0]))
    assert (t["partner"] == -1).all()
    assert t[["delta_vs_base", "label_score", "decoder_cosine"]].isna().all().all()


def test_histograms_count_every_active_latent_in_its_bin():
    torch.manual_seed(0)
    sae = TopKSAE(SAEShape(d_in=8, n_latents=16, k=3), seed=0)
    x = torch.randn(200, 8)
    code = sae.encode(x)
    hist_max = np.full(16, 2.0, np.float32)
    hist = feature_histograms(sae, [x[:77], x[77:]], hist_max, bins=4)
    vals, idx = code.vals.detach().numpy(), code.idx.numpy()
    active = vals > 0
    assert hist.sum() == active.sum()
    f = int(np.bincount(idx[active]).argmax())
    ref = np.clip((vals[active][idx[active] == f] / 2.0 * 4).astype(int), 0, 3)
    assert hist[f].tolist() == np.bincount(ref, minlength=4).tolist()


def write_cache(path, doc: list[int], acts: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f["acts"] = acts.astype(np.float16)
        f["doc"] = np.asarray(doc, np.int32)
        f["doc_ids"] = np.array([f"d{i}" for i in range(max(doc) + 1)], dtype=object)
        f["token_id"] = np.arange(100, 100 + len(doc), dtype=np.int32)


def test_doc_batches_never_split_a_document(tmp_path):
    doc = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3]
    write_cache(tmp_path / "c.h5", doc, np.zeros((len(doc), 4)))
    got = list(_doc_batches(tmp_path / "c.h5", batch_size=2))
    batches = [d.tolist() for d, _, _ in got]
    assert [lo for _, _, lo in got] == np.cumsum([0, *map(len, batches)])[:-1].tolist()
    assert sum(batches, []) == doc
    seen = [set(b) for b in batches]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])


def test_headline_features_are_each_documents_max(tmp_path):
    rng = np.random.default_rng(0)
    doc = [0, 0, 1, 1, 1, 2]
    x = rng.normal(size=(6, 8)).astype(np.float16)
    write_cache(tmp_path / "c.h5", doc, x)
    sae = TopKSAE(SAEShape(d_in=8, n_latents=16, k=3), seed=1)
    top = headline_features(
        sae, tmp_path / "c.h5", top_n=2, batch_size=3, decode=lambda i: f"t{i}"
    )
    dense = np.zeros((6, 16))
    code = sae.encode(torch.from_numpy(x.astype(np.float32)))
    np.put_along_axis(dense, code.idx.numpy(), code.vals.detach().numpy(), axis=1)
    assert list(top["doc_id"]) == ["d0", "d1", "d2"]
    for d, row in enumerate(top.itertuples()):
        peak = dense[np.asarray(doc) == d].max(0)
        assert row.features == np.argsort(-peak)[:2].tolist()
        assert row.acts == pytest.approx(np.sort(peak)[::-1][:2], abs=1e-3)
        # The token each feature peaks on in this document (token ids 100 + row).
        rows = np.flatnonzero(np.asarray(doc) == d)
        peak_rows = [rows[dense[rows, f].argmax()] for f in row.features]
        assert row.tokens == [f"t{100 + r}" for r in peak_rows]


def test_find_run_picks_the_latest_built_viewer(tmp_path):
    for i, name in enumerate(["results", "a/results", "b/results"]):
        manifest = tmp_path / name / "viewer" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text("{}")
        os.utime(manifest, (1000 + i, 1000 + [5, 9, 1][i]))
    assert find_run(None, tmp_path) == tmp_path / "a" / "results"
    assert find_run(tmp_path / "b") == tmp_path / "b" / "results"
    with pytest.raises(NoViewerData, match="manifest.json"):
        find_run(tmp_path / "nowhere")


def _examples_table(n_features: int, per_feature: int) -> pd.DataFrame:
    """Rows in feature order, kinds mixed within each feature."""
    kinds = np.array(["top", "quantile", "negative_random", "negative_similar"])
    n = n_features * per_feature
    return pd.DataFrame(
        {
            "feature": np.repeat(np.arange(n_features), per_feature),
            "kind": kinds[np.arange(n) % 3 * (np.arange(n) % 5 > 0)],
            "split": "score",
            "corpus": "domain",
            "doc_id": [f"d{i}" for i in range(n)],
            "row": np.arange(n),
            "tokens": [["a", "b"]] * n,
            "acts": [[0.0, float(i)] for i in range(n)],
            "peak": 1,
            "activation": np.arange(n, dtype=float),
            "quantile": pd.array([None] * n, dtype="Float64"),
        },
        columns=EXAMPLE_COLUMNS,
    )


def test_viewer_examples_stream_in_batches(tmp_path):
    """Batches that cut features in two give the whole-table sort."""
    df = _examples_table(n_features=40, per_feature=7)
    src = tmp_path / "examples.parquet"
    df.to_parquet(src, index=False, row_group_size=50)
    out = tmp_path / "viewer.parquet"
    make_viewer_examples(src, row_group=16, out=out, batch_rows=23)

    want = df.sort_values(["feature", "kind"], kind="stable").reset_index(drop=True)
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, want)
    meta = pq.ParquetFile(out).metadata
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 16


def test_viewer_examples_refuse_rows_out_of_feature_order(tmp_path):
    df = _examples_table(n_features=10, per_feature=3).iloc[::-1]
    src = tmp_path / "examples.parquet"
    df.to_parquet(src, index=False)
    with pytest.raises(ValueError, match="not in feature order"):
        make_viewer_examples(src, row_group=16, out=tmp_path / "v.parquet")
    assert not (tmp_path / "v.parquet").exists()
