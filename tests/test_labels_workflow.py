"""The labels stage inside the real workflow (tiny config, HTTP labeler with
log-probabilities served by the test on 127.0.0.1): tables, scores, ground truth
and verdict written; changing the labeler or a prompt template reruns only
labeling; a rerun asks the server nothing."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, edited_config, planned_jobs, snakemake
from labels_server import ChatServer

from saeflow.labels.labeling import SCORE_COLUMNS

TARGET = "results/labels/feature_labels_clean_domain.csv"


def labels_config(tmp: Path, server: ChatServer, name: str = "labels.yaml", **kw):
    labels = {
        "activate": True,
        "labeler": {"kind": "http", "model": "m", "base_url": server.url("logprobs")},
        "top_n": 2,
        "compare_n": 1,
        "n_explain": 3,
        "n_detect": 4,
        "n_fuzz": 4,
        "prompts": str(tmp / "prompts"),
        **kw,
    }
    return edited_config(tmp, name, lambda c: c.update(labels=labels))


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory, tiny_run):
    """A copy of the shared tiny run (timestamps and Snakemake metadata kept, so
    nothing upstream reruns) with the labels stage built on top."""
    work = tmp_path_factory.mktemp("labels_run") / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    shutil.copytree(ROOT / "prompts", work / "prompts")
    with ChatServer() as server:
        cfg = labels_config(work, server)
        result = snakemake(work, "--cores", "2", TARGET, config=cfg)
        assert result.returncode == 0, result.stderr[-4000:]
        assert planned_jobs(result) == {"label_features": 1}, result.stderr[-4000:]
        yield work, server, cfg


@pytest.mark.slow
def test_labels_tables_and_verdict(labels_run):
    work, server, _ = labels_run
    res = work / "results" / "labels"
    clean = pd.read_csv(res / "feature_labels_clean_domain.csv")
    assert set(clean["model"]) == {"finetuned"}
    assert (
        clean.groupby("layer")["source"].apply(lambda s: s.str.contains("spec").sum())
        == 2
    ).all()
    # Each feature has a label or the reason it has none; a label has every score.
    assert (clean["label_ok"] ^ clean["fail_reason"].notna()).all()
    labelled = clean[clean["label_ok"]]
    assert len(labelled) >= 2 and labelled["label"].str.startswith("mentions of ").all()
    assert labelled[SCORE_COLUMNS].notna().all().all()
    assert labelled["event_purity"].between(0, 1).all()
    detailed = pd.read_csv(res / "feature_labels_detailed_domain.csv")
    assert {"explain_prompt", "explain_answer", "detection_p_yes"} <= set(
        detailed.columns
    )
    assert (detailed.loc[clean["label_ok"], "detection_method"] == "logprobs").all()
    summary = json.loads((res / "labels_summary_domain.json").read_text())
    assert "BETTER than the shuffled label baseline" in summary["statement"]
    assert set(summary["median_auroc"]) == {"detection", "fuzzing", "embedding"}
    assert summary["ground_truth"]["n_features_with_a_family"] >= 0
    for layer in (1, 2):
        examples = work / "results" / "examples" / "finetuned" / f"layer_{layer}"
        assert (examples / "examples.parquet").is_file()


@pytest.mark.slow
def test_changing_labeler_or_template_reruns_only_labeling(labels_run, tmp_path):
    work, server, _ = labels_run
    labeler = {
        "kind": "http",
        "model": "another-model",
        "base_url": server.url("logprobs"),
    }
    other = labels_config(work, server, "other.yaml", labeler=labeler)
    assert planned_jobs(snakemake(work, "-n", TARGET, config=other)) == {
        "label_features": 1
    }
    (work / "prompts" / "explain.txt").write_text(
        (ROOT / "prompts" / "explain.txt").read_text() + "\nBe brief.\n"
    )
    same = labels_config(work, server, "same.yaml")
    assert planned_jobs(snakemake(work, "-n", TARGET, config=same)) == {
        "label_features": 1
    }
    shutil.copy(ROOT / "prompts" / "explain.txt", work / "prompts" / "explain.txt")


@pytest.mark.slow
def test_forced_rerun_asks_the_server_nothing(labels_run):
    work, server, cfg = labels_run
    before = sum(server.requests.values())
    result = snakemake(
        work,
        *("--cores", "1", "--forcerun", "label_features"),
        *("--allowed-rules", "label_features", "--", TARGET),
        config=cfg,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sum(server.requests.values()) == before
    clean = pd.read_csv(work / TARGET)
    assert clean["label_ok"].any()
