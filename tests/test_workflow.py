"""The real Snakefile, run end to end on a tiny config in a temp folder, then the
rerun rules: nothing to do twice, `k` reruns only SAEs and what follows, the
corpus reruns everything downstream; bad config stops before any job."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, edited_config, planned_jobs, snakemake


@pytest.mark.slow
def test_end_to_end_outputs(tiny_run):
    res = tiny_run / "results"
    for model in ("base", "finetuned"):
        feats = res / "features" / model
        summary = json.loads((feats / "domain_feature_summary.json").read_text())
        assert summary["layers"] == [1, 2]
        assert "SYNTHETIC" in summary["note"]
        comparison = pd.read_csv(feats / "layer_comparison_report.csv")
        assert list(comparison["layer"]) == [1, 2]
        assert (feats / "specialization_by_layer.png").stat().st_size > 1000
        top = pd.read_csv(feats / "layer_1" / "top_5_features_analysis.csv")
        assert len(top) <= 5 and (top["specialization"] > 0).all()
        for layer in (1, 2):
            metrics = json.loads(
                (res / "sae" / model / f"layer_{layer}" / "metrics.json").read_text()
            )
            assert 0 < metrics["eval"]["fvu"] < 1
            assert metrics["eval"]["l0"] <= 4
    ft = json.loads((res / "models" / "finetuned_metrics.json").read_text())
    assert 0 <= ft["accuracy"] <= 1 and "majority_baseline" in ft
    assert not list(res.rglob("*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_second_run_does_nothing(tiny_run):
    result = snakemake(tiny_run, "-n")
    assert result.returncode == 0
    assert planned_jobs(result) == {}


@pytest.mark.slow
def test_changing_k_reruns_only_sae_and_downstream(tiny_run, tmp_path):
    cfg = edited_config(tmp_path, "k.yaml", lambda c: c["sae"].update(k=3))
    jobs = planned_jobs(snakemake(tiny_run, "-n", config=cfg))
    assert jobs["train_sae"] == 4
    assert {"build_corpus", "finetune_model", "cache_activations"}.isdisjoint(jobs)
    assert jobs["compute_feature_stats"] == 8


@pytest.mark.slow
def test_changing_corpus_reruns_everything_downstream(tiny_run, tmp_path):
    cfg = edited_config(
        tmp_path, "corpus.yaml", lambda c: c["corpora"]["domain"].update(n_docs=130)
    )
    jobs = planned_jobs(snakemake(tiny_run, "-n", config=cfg))
    assert jobs["build_corpus"] == 1  # only the domain corpus changed
    assert jobs["finetune_model"] == 1
    # base×domain, and both corpora of the fine-tuned model (itself rebuilt);
    # base×general is untouched.
    assert jobs["cache_activations"] == 3
    assert jobs["train_sae"] == 4 and jobs["summarize_layers"] == 2


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["sae"].update(kk=3), "kk"),
        (lambda c: c["sae"].update(k="three"), "three"),
        (lambda c: c.update(seeed=1), "seeed"),
        (lambda c: c["corpora"]["domain"].update(source="twitter"), "twitter"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, named):
    cfg = edited_config(tmp_path, "bad.yaml", edit)
    result = snakemake(tmp_path, "-n", config=cfg)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in out and "invalid config at key" in out
    assert "Job stats" not in out


@pytest.mark.parametrize("name", ["bert-finbert.yaml", "llama2-7b.yaml"])
def test_hub_configs_build_their_dag(tmp_path, name):
    result = snakemake(tmp_path, "-n", config=ROOT / "configs" / name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result)["train_sae"] > 0


def test_default_config_builds_its_dag(tmp_path):
    result = snakemake(tmp_path, "-n", config=ROOT / "config.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["train_sae"] == 6
    # The default labeler is a GGUF: converted once, by its own job.
    assert jobs["prepare_labeler"] == 1


def test_snakefmt_clean():
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakefmt"),
            "--check",
            "Snakefile",
            "rules",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


CONTRACT = [
    "finetuned_feature",
    "base_feature",
    "decoder_cosine",
    "activation_correlation",
    "matched",
    "status",
]


@pytest.mark.slow
def test_comparison_outputs(tiny_run):
    res = tiny_run / "results"
    cmp = res / "compare"
    summary = json.loads((cmp / "comparison_summary.json").read_text())
    assert summary["layers"] == [1, 2] and "SYNTHETIC" in summary["note"]
    for layer in (1, 2):
        m = pd.read_parquet(cmp / f"layer_{layer}" / "matches.parquet")
        shape = json.loads(
            (
                res / "sae" / "finetuned" / f"layer_{layer}" / "sae" / "cfg.json"
            ).read_text()
        )
        assert len(m) == shape["n_latents"] and list(m.columns[:6]) == CONTRACT
        assert set(m["status"]) <= {"matched", "changed", "new"}
        lost = pd.read_parquet(cmp / f"layer_{layer}" / "lost.parquet")
        assert len(lost) == shape["n_latents"] - m["matched"].sum()
        # Transfer FVU of an SAE on its own activations is its own held-out FVU.
        transfer = json.loads((cmp / f"layer_{layer}" / "transfer.json").read_text())
        for model in ("base", "finetuned"):
            metrics = json.loads(
                (res / "sae" / model / f"layer_{layer}" / "metrics.json").read_text()
            )
            own = transfer[f"fvu_{model}_own"]
            assert own == pytest.approx(metrics["eval"]["fvu"], rel=1e-5)
        layer_json = json.loads(
            (cmp / f"layer_{layer}" / "layer_comparison.json").read_text()
        )
        alignment = layer_json["token_alignment"]["domain"]
        assert alignment["identical"] and alignment["aligned_fraction"] == 1.0
    overlap = pd.read_csv(cmp / "overlap_by_layer.csv")
    assert list(overlap["layer"]) == [1, 2]
    assert (overlap["decoder_overlap_lo"] <= overlap["decoder_overlap"]).all()
    for name in (
        "overlap_by_layer",
        "delta_distributions",
        "specialization_heatmap",
        "specialization_scatter",
    ):
        assert (cmp / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_switching_preset_reruns_nothing_upstream(tiny_run):
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--config", "preset=single"))
    upstream = {"cache_activations", "train_sae", "match_features", "measure_transfer"}
    assert upstream.isdisjoint(jobs)
    assert jobs["summarize_comparison"] == 1 and jobs["plot_comparison"] == 1


@pytest.mark.slow
def test_changing_plot_config_reruns_only_the_figures(tiny_run, tmp_path):
    cfg = edited_config(
        tmp_path, "plots.yaml", lambda c: c["compare"]["plots"].update(dpi=70)
    )
    assert planned_jobs(snakemake(tiny_run, "-n", config=cfg)) == {
        "plot_comparison": 1,
        "all": 1,
    }


def test_presets_choose_the_layers(tmp_path):
    single = planned_jobs(snakemake(tmp_path, "-n", "--config", "preset=single"))
    assert single["train_sae"] == 2 and single["match_features"] == 1
    listed = planned_jobs(snakemake(tmp_path, "-n", "--config", "preset=[1]"))
    assert listed["train_sae"] == 2 and listed["match_features"] == 1
    assert planned_jobs(snakemake(tmp_path, "-n"))["match_features"] == 2
    bad = snakemake(tmp_path, "-n", "--config", "preset=[9]")
    assert bad.returncode != 0
    assert "invalid config at key 'preset'" in bad.stdout + bad.stderr
