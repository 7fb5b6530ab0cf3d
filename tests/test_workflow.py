"""The real Snakefile, run end to end on a tiny config in a temp folder, then the
rerun rules: nothing to do twice, `k` reruns only SAEs and what follows, the
corpus reruns everything downstream; bad config stops before any job."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    ROOT,
    edited_config,
    fake_hub_cache,
    fresh_workdir,
    planned_jobs,
    snakemake,
)
from labels_server import ChatServer
from viewer_harness import CHROMIUM, headless_chrome, serve_viewer

from saeflow.compare.layer import STATUSES
from saeflow.viewer.store import RunData


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
    assert jobs["train_sae"] == 4 and jobs["train_sae_replicate"] == 4
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


# Hub models as a warm Hugging Face cache holds them (config.json and weights):
# the parse-time checks read the sizes; offline with no cache they refuse.
HUB_MODELS = {
    "bert-base-uncased": {"num_hidden_layers": 12, "hidden_size": 768},
    "ProsusAI/finbert": {"num_hidden_layers": 12, "hidden_size": 768},
    "meta-llama/Llama-2-7b-hf": {"num_hidden_layers": 32, "hidden_size": 4096},
    "AdaptLLM/finance-LLM": {"num_hidden_layers": 32, "hidden_size": 4096},
}


@pytest.mark.parametrize("name", ["bert-finbert.yaml", "llama2-7b.yaml"])
def test_hub_configs_build_their_dag(tmp_path, monkeypatch, name):
    for repo_id, sizes in HUB_MODELS.items():
        fake_hub_cache(tmp_path / "hub", repo_id, sizes)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
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
        assert set(m["status"]) <= set(STATUSES)
        assert m["nu_reconstruction"].notna().any()
        lost = pd.read_parquet(cmp / f"layer_{layer}" / "lost.parquet")
        assert len(lost) == shape["n_latents"] - m["matched"].sum()
        # The seed floor: a second SAE per model, from its own init seed.
        rep = res / "sae" / "finetuned" / f"layer_{layer}" / "replicates" / "r1"
        assert (rep / "sae" / "cfg.json").exists()
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
        floor = layer_json["seed_floor"]
        kinds = sorted(p["kind"] for p in floor["pairs"])
        assert kinds == ["cross"] * 4 + ["same_base", "same_finetuned"]
        lo, hi = floor["effect_ci"]
        assert lo <= floor["effect"] <= hi
    overlap = pd.read_csv(cmp / "overlap_by_layer.csv")
    assert list(overlap["layer"]) == [1, 2]
    assert list(overlap.columns[:5]) == [
        "layer",
        "finetuning_effect",
        "finetuning_effect_lo",
        "finetuning_effect_hi",
        "beyond_seed_floor",
    ]
    assert (overlap["decoder_overlap_lo"] <= overlap["decoder_overlap"]).all()
    assert "NaN" not in (cmp / "comparison_summary.json").read_text()
    for name in (
        "overlap_by_layer",
        "latent_scaling",
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


def test_presets_choose_the_layers(tmp_path, tiny_bert):
    fresh_workdir(tmp_path, tiny_bert)
    single = planned_jobs(snakemake(tmp_path, "-n", "--config", "preset=single"))
    assert single["train_sae"] == 2 and single["match_features"] == 1
    listed = planned_jobs(snakemake(tmp_path, "-n", "--config", "preset=[1]"))
    assert listed["train_sae"] == 2 and listed["match_features"] == 1
    assert planned_jobs(snakemake(tmp_path, "-n"))["match_features"] == 2
    bad = snakemake(tmp_path, "-n", "--config", "preset=[9]")
    assert bad.returncode != 0
    assert "invalid config at key 'preset'" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_identical_models_show_no_finetuning_effect(tmp_path, tiny_bert):
    """The control: the fine-tuned model IS the base. Its SAEs still start from
    their own seeds, so only the seed floor keeps features from looking new."""
    work = fresh_workdir(tmp_path / "work", tiny_bert)
    cfg = edited_config(
        tmp_path,
        "same.yaml",
        lambda c: c["models"]["finetuned"].update(ref="models/tiny_bert"),
    )
    target = "results/compare/comparison_summary.json"
    result = snakemake(work, "--cores", "2", target, config=cfg)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((work / target).read_text())
    for layer in ("1", "2"):
        effect = summary["finetuning_effect"][layer]
        lo, hi = effect["effect_ci"]
        assert lo <= 0 <= hi and not effect["beyond_seed_floor"], effect
        assert effect["n_new"] == 0 and effect["n_lost"] == 0, effect
        # The raw count a single seed pair gives is what the floor corrects.
        details = summary["layer_details"][layer]
        assert details["n_unmatched_finetuned"] > 0


@pytest.mark.slow
def test_crosscoder_stage(tiny_run, tmp_path):
    """crosscoder.activate on a finished run: only the crosscoder rules run, and
    its latents, as the "crosscoder" model, get statistics, examples, labels and
    viewer pages that set both models side by side."""
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    shutil.copytree(ROOT / "prompts", work / "prompts")
    with ChatServer() as server:
        cfg = edited_config(
            tmp_path,
            "cc.yaml",
            lambda c: c.update(
                crosscoder={"activate": True, "expansion": 2, "k": 8},
                labels={
                    "activate": True,
                    "labeler": {
                        "kind": "http",
                        "model": "m",
                        "base_url": server.url("logprobs"),
                    },
                    "models": ["crosscoder"],
                    "top_n": 2,
                    "n_explain": 3,
                    "n_detect": 4,
                    "n_fuzz": 4,
                    "prompts": str(work / "prompts"),
                },
            ),
        )
        dry = snakemake(work, "-n", config=cfg)
        assert dry.returncode == 0, dry.stderr[-4000:]
        jobs = planned_jobs(dry)
        assert jobs["train_crosscoder"] == 4 and jobs["analyse_crosscoder"] == 2
        assert jobs["summarize_crosscoders"] == 1 and jobs["crosscoder_as_sae"] == 2
        # Examples only for the crosscoder: the SAEs' were built by tiny_run.
        assert jobs["collect_feature_examples"] == 2 and jobs["label_features"] == 1
        upstream = {"cache_activations", "train_sae", "train_sae_replicate"}
        assert upstream.isdisjoint(jobs) and "match_features" not in jobs
        result = snakemake(work, "--cores", "2", config=cfg)
    assert result.returncode == 0, result.stderr[-4000:]
    table = pd.read_csv(work / "results" / "crosscoder" / "crosscoder_summary.csv")
    assert list(table["layer"]) == [1, 2]
    n = table[[c for c in table if c.startswith("n_")]].sum(axis=1)
    assert (n == 128).all()  # expansion 2 x 64-wide input: every latent classed
    assert (table["fvu_base_crosscoder"] < 1).all()
    latents = pd.read_parquet(work / "results/crosscoder/layer_1/latents.parquet")
    assert {"relative_norm", "nu_error", "stable", "final_class"} <= set(latents)

    labels = pd.read_csv(work / "results/labels/feature_labels_clean_domain.csv")
    assert set(labels["model"]) == {"crosscoder"} and labels["label_ok"].any()
    run = RunData(work / "results")
    assert run.models == ["base", "finetuned", "crosscoder"]
    assert "relative_norm" in run.metrics
    first = run.features("crosscoder", "1", "relative_norm", "5", "0")["items"]
    assert len(first) == 5 and all(f["status"] for f in first)
    labelled = labels[labels["label_ok"]].iloc[0]
    info = run.feature_info(
        "crosscoder", str(labelled["layer"]), str(labelled["feature"])
    )
    assert info["stats"]["label"] == labelled["label"]
    assert info["examples"]["top"]
    by_model = {m["model"]: m for m in info["models"]}
    assert set(by_model) == {"base", "finetuned"}
    for model, m in by_model.items():
        assert m["decoder_norm"] > 0 and -1 <= m["cosine"] <= 1
        sae_feature = run.feature_info(model, str(labelled["layer"]), str(m["feature"]))
        assert m["frac_active_domain"] == sae_feature["stats"]["frac_active_domain"]
    # The SAE models' pages carry no crosscoder panel.
    assert run.feature_info("finetuned", "1", "0")["models"] is None
    if CHROMIUM.exists():
        see_crosscoder_page_in_a_browser(work / "results", labelled, tmp_path)


def see_crosscoder_page_in_a_browser(results, latent, tmp_path):
    """The latent's page in Chromium: the two models side by side, and a click on
    the base model's nearest SAE feature opens that feature's page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    layer, fid = int(latent["layer"]), int(latent["feature"])
    with serve_viewer(results) as (host, port), headless_chrome(tmp_path) as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(f"http://{host}:{port}/#feature/crosscoder/{layer}/{fid}")
        table = wait.until(ec.visibility_of_element_located((By.ID, "cc-models")))
        head = table.find_elements(By.CSS_SELECTOR, "tr")[0].text.split()
        assert head == ["base", "finetuned"]
        assert "relative decoder norm" in driver.find_element(By.ID, "cc-class").text
        base_chip = table.find_elements(By.CSS_SELECTOR, ".chip")[0]
        target = base_chip.text.split(":")[0]  # "Feature 12"
        base_chip.click()
        wait.until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#detail h2"), target)
        )
        assert "base model" in driver.find_element(By.ID, "detail").text
        assert not driver.find_element(By.ID, "error").is_displayed()
