"""Neuronpedia-style feature JSON from a tiny synthetic results folder: tokens and
values aligned, the peak as qualifying token, histogram counts and bin centres,
label and scores carried, optional stages absent, required files named."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeflow.cli import main
from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.viewer.neuronpedia import ExportConfig, export_features

M, BINS, LAYER = 6, 4, 1
N_TOKENS = {"domain": 100, "general": 200}
LABELER = {"kind": "transformers", "model": "package:llm", "gguf_file": "tiny.gguf"}


def strict_json(path: Path) -> dict:
    """Parse JSON, refusing NaN / Infinity (not JSON)."""

    def refuse(token: str) -> None:
        raise ValueError(f"{path}: {token} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def write_run(root: Path, model: str = "base") -> Path:
    """results/ with viewer table + histograms, stats, examples and labels."""
    r = root / "results"
    where = Path(model) / f"layer_{LAYER}"
    rng = np.random.default_rng(0)
    hist = rng.integers(0, 5, size=(2, M, BINS))  # (corpus, feature, bin)
    stats = {}
    for i, c in enumerate(N_TOKENS):
        stats[f"frac_active_{c}"] = hist[i].sum(1) / N_TOKENS[c]
        stats[f"max_activation_{c}"] = np.float32(2.0 + i + np.arange(M))
        stats[f"mean_activation_{c}"] = 0.1 * np.ones(M)
        d = r / "features" / where
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"feature": np.arange(M), "n_tokens": N_TOKENS[c]}).to_parquet(
            d / f"{c}_stats.parquet"
        )
    table = pd.DataFrame({"feature": np.arange(M), **stats})
    table["specialization"] = [0.1, 0.9, 0.5, -0.2, 0.7, 0.0]
    pd.DataFrame(table).to_parquet(r / "features" / where / "specialization.parquet")
    table["status"], table["partner"] = "matched", np.arange(M)[::-1]
    table["decoder_cosine"] = table["activation_correlation"] = np.float32(0.5)
    table["delta_vs_base"] = np.nan
    table["hist_max"] = table[["max_activation_domain", "max_activation_general"]].max(
        axis=1
    )
    v = r / "viewer" / where
    v.mkdir(parents=True)
    table.to_parquet(v / "features.parquet")
    np.save(v / "histograms.npy", hist)

    rows = []
    for f in range(M):
        # top: peak at 1 and the max; quantile: peak at 0, max at 2
        for kind, acts, peak, q in [
            ("top", [0.0, 3.0 + f, 1.0], 1, None),
            ("quantile", [0.5, 0.0, 0.75], 0, 0.5),
            ("negative_random", [0.0, 0.0, 0.0], 1, None),
        ]:
            rows.append(
                dict(
                    feature=f,
                    kind=kind,
                    split="explain" if kind == "top" else "score",
                    corpus="domain",
                    doc_id=f"doc-{f}-{kind}",
                    row=0,
                    tokens=["the", "stock", "##s"],
                    acts=acts,
                    peak=peak,
                    activation=acts[peak],
                    quantile=q,
                )
            )
    ex = pd.DataFrame(rows)[EXAMPLE_COLUMNS]
    ex["quantile"] = ex["quantile"].astype("Float64")
    (r / "examples" / where).mkdir(parents=True)
    ex.to_parquet(r / "examples" / where / "examples.parquet")

    lab = pd.DataFrame(
        {
            "model": [model, model, "finetuned" if model == "base" else "base"],
            "layer": LAYER,
            "feature": [3, 5, 0],
            "label": ["ticker symbols", np.nan, "other model"],
            "label_ok": [True, False, True],
            "fail_reason": [np.nan, "empty answer", np.nan],
            "source": "specialized",
            "score": [0.6, np.nan, 0.5],
            "labeler": json.dumps(LABELER),
        }
    )
    for s, auroc in [("detection", 0.7), ("fuzzing", 0.6), ("embedding", 0.8)]:
        for prefix, shift in [("", 0.0), ("random_label_", -0.2), ("shuffled_", -0.1)]:
            prefix = "shuffled_label_" if prefix == "shuffled_" else prefix
            lab[f"{prefix}{s}_auroc"] = [auroc + shift, np.nan, 0.5]
            lab[f"{prefix}{s}_balanced_accuracy"] = [0.55, np.nan, 0.5]
    (r / "labels").mkdir()
    lab.to_csv(r / "labels" / "feature_labels_clean_domain.csv", index=False)
    (r / "labels" / "labels_summary_domain.json").write_text(
        json.dumps({"embedder": "tiny-embedder"})
    )
    return r


def test_feature_json_fields(tmp_path):
    r = write_run(tmp_path)
    out = export_features(ExportConfig(r, "base", LAYER, tmp_path / "np", top=2))
    # labelled rows of base × layer 1 (3 and failed 5), then the top 2 (1, 4)
    assert out.features == [3, 5, 1, 4] and out.missing == []
    index = strict_json(out.folder / "index.json")
    assert [e["file"] for e in index["features"]] == [
        "3.json",
        "5.json",
        "1.json",
        "4.json",
    ]
    assert index["features"][0]["label"] == "ticker symbols"
    hist = np.load(r / "viewer" / "base" / "layer_1" / "histograms.npy")
    for f in out.features:
        d = strict_json(out.folder / f"{f}.json")
        assert (d["modelId"], d["layer"], d["index"]) == ("base", "1-saeflow", str(f))
        top, quantile = d["activations"]  # negatives left out, top first
        assert top["tokens"] == ["the", "stock", "##s"]
        assert top["values"] == [0.0, 3.0 + f, 1.0]
        assert top["maxValueTokenIndex"] == top["qualifyingTokenIndex"] == 1
        assert top["maxValue"] == 3.0 + f and top["minValue"] == 0.0
        assert quantile["qualifyingTokenIndex"] == 0  # the sampled token …
        assert quantile["maxValueTokenIndex"] == 2  # … is not its window's max
        assert quantile["saeflow"] == {
            "kind": "quantile",
            "split": "score",
            "quantile": 0.5,
        }
        # histogram: both corpora's counts, bin centres over [0, hist_max]
        assert d["freq_hist_data_bar_heights"] == (hist[0, f] + hist[1, f]).tolist()
        assert d["saeflow"]["histogram"]["general"] == hist[1, f].tolist()
        hist_max = 3.0 + f  # general's max (2 + 1 + f) is the larger
        assert d["maxActApprox"] == hist_max
        step = hist_max / BINS
        assert d["freq_hist_data_bar_values"] == pytest.approx(
            [step * (i + 0.5) for i in range(BINS)]
        )
        n = sum(N_TOKENS.values())
        assert d["frac_nonzero"] * n == pytest.approx(hist[:, f].sum())


def test_label_and_scores_carried(tmp_path):
    r = write_run(tmp_path)
    folder = export_features(
        ExportConfig(r, "base", LAYER, tmp_path / "np", top=0)
    ).folder
    (exp,) = strict_json(folder / "3.json")["explanations"]
    assert exp["description"] == "ticker symbols"
    assert exp["explanationModelName"] == "tiny.gguf"
    scores = {s["explanationScoreTypeName"]: s for s in exp["scores"]}
    assert set(scores) == {
        f"saeflow_{s}_auroc" for s in ("detection", "fuzzing", "embedding")
    }
    det = scores["saeflow_detection_auroc"]
    assert det["value"] == pytest.approx(0.7)
    details = json.loads(det["jsonDetails"])
    assert details["random_label_auroc"] == pytest.approx(0.5)
    assert details["shuffled_label_auroc"] == pytest.approx(0.6)
    assert (
        scores["saeflow_embedding_auroc"]["explanationScoreModelName"]
        == "tiny-embedder"
    )
    failed = strict_json(folder / "5.json")
    assert failed["explanations"] == []
    assert failed["saeflow"]["label"]["fail_reason"] == "empty answer"
    assert failed["saeflow"]["label"]["label_ok"] is False


def test_absent_labels_and_viewer(tmp_path, caplog):
    r = write_run(tmp_path)
    (r / "labels" / "feature_labels_clean_domain.csv").unlink()
    for p in (r / "viewer" / "base" / "layer_1").iterdir():
        p.unlink()
    with caplog.at_level(logging.WARNING):
        out = export_features(ExportConfig(r, "base", LAYER, tmp_path / "np", top=3))
    assert out.features == [1, 4, 2]  # by specialization alone
    assert "feature_labels_clean_domain.csv absent" in caplog.text
    assert "features.parquet absent" in caplog.text
    d = strict_json(out.folder / "1.json")
    assert d["explanations"] == [] and d["saeflow"]["label"] is None
    assert d["freq_hist_data_bar_heights"] == [] and d["saeflow"]["histogram"] is None
    assert d["frac_nonzero"] is not None and len(d["activations"]) == 2
    assert len(strict_json(out.folder / "index.json")["saeflow"]["missing"]) == 2


def test_requested_features_and_unknown_id(tmp_path):
    r = write_run(tmp_path)
    out = export_features(
        ExportConfig(r, "base", LAYER, tmp_path / "np", features=(2, 0))
    )
    assert sorted(p.name for p in out.folder.iterdir()) == [
        "0.json",
        "2.json",
        "index.json",
    ]
    with pytest.raises(ValueError, match=r"\[99\]"):
        export_features(ExportConfig(r, "base", LAYER, tmp_path / "np", features=(99,)))


def test_missing_required_files_are_named(tmp_path, caplog):
    r = write_run(tmp_path)
    examples = r / "examples" / "base" / "layer_1" / "examples.parquet"
    examples.unlink()
    args = ["export-features", "--results", str(r), "--model", "base"]
    args += ["--layer", "1", "--out", str(tmp_path / "np")]
    assert main(args) == 1
    assert str(examples) in caplog.text
    with pytest.raises(FileNotFoundError, match="examples.parquet not found"):
        export_features(ExportConfig(r, "base", LAYER, tmp_path / "np"))
    write_run(tmp_path / "b")
    r = tmp_path / "b" / "results"
    (r / "viewer" / "base" / "layer_1" / "features.parquet").unlink()
    (r / "features" / "base" / "layer_1" / "specialization.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="specialization.parquet"):
        export_features(ExportConfig(r, "base", LAYER, tmp_path / "np"))
    assert not (tmp_path / "np" / "base").exists()  # nothing half-written
