"""No needless reruns: an SAE retrained to the same bytes leaves the rules that
read it alone, a different SAE reruns them (the digest beside sae/,
saeflow/workflow/digest.py), on the real Snakefile and tiny config."""

import shutil
import subprocess

import pytest
from conftest import edited_config, fresh_workdir, planned_jobs, snakemake

from saeflow.workflow.digest import add_missing_digests, digest_text, write_digests

LAYER = "results/sae/base/layer_1"
STATS = "results/features/base/layer_1/domain_stats.parquet"


def test_digest_checks_with_sha256sum(tmp_path):
    sae = tmp_path / "sae"
    (sae / "sub").mkdir(parents=True)
    (sae / "w.bin").write_bytes(b"\x00\x01" * 1000)
    (sae / "sub" / "cfg.json").write_text("{}")
    (sae / ".snakemake_timestamp").write_text("")  # Snakemake's, not ours
    out = str(tmp_path / "sae.sha256")
    assert write_digests([str(sae), out, str(tmp_path / "x.json")]) == [out]
    lines = (tmp_path / "sae.sha256").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["sae/sub/cfg.json", "sae/w.bin"]
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", out], cwd=tmp_path)
        assert check.returncode == 0
    before = digest_text(sae)
    (sae / "w.bin").write_bytes(b"\x00\x02" * 1000)
    assert digest_text(sae) != before
    # A digest whose target is not an output of the same job is left alone.
    assert write_digests([str(tmp_path / "y.sha256")]) == []


def _retrain(work, config=None):
    """Force the one train_sae job of base layer 1; nothing downstream runs."""
    args = ["--cores", "1", "-f", f"{LAYER}/metrics.json"]
    result = snakemake(work, *args, **({"config": config} if config else {}))
    assert result.returncode == 0, result.stderr[-4000:]
    assert planned_jobs(result) == {"train_sae": 1}


@pytest.mark.slow
def test_identical_retrain_reruns_no_consumer(tmp_path, tiny_bert):
    work = fresh_workdir(tmp_path / "work", tiny_bert)
    result = snakemake(work, "--cores", "2", STATS)
    assert result.returncode == 0, result.stderr[-4000:]

    # Results from before digests existed: a reader that must rerun (here forced;
    # after an upgrade, changed code) would drag its SAE into retraining for want
    # of the digest; `saeflow add-digests` writes it, and only the reader reruns.
    (work / LAYER / "sae.sha256").unlink()
    forced = snakemake(work, "-n", "-f", STATS)
    assert planned_jobs(forced) == {"train_sae": 1, "compute_feature_stats": 1}
    assert add_missing_digests(work / "results") == [work / LAYER / "sae.sha256"]
    forced = snakemake(work, "-n", "-f", STATS)
    assert planned_jobs(forced) == {"compute_feature_stats": 1}
    result = snakemake(work, "--cores", "1", "-f", STATS)
    assert result.returncode == 0, result.stderr[-4000:]

    weights = (work / LAYER / "sae" / "sae.safetensors").read_bytes()
    stats_time = (work / STATS).stat().st_mtime_ns

    _retrain(work)
    # Same seeds, same bytes (the premise), but a newer folder and digest.
    assert (work / LAYER / "sae" / "sae.safetensors").read_bytes() == weights
    assert (work / LAYER / "sae.sha256").stat().st_mtime_ns > stats_time
    assert planned_jobs(snakemake(work, "-n", STATS)) == {}

    # The control: a different SAE (k=3 instead of 4) reruns the consumer, through
    # the digest alone (train_sae's params now match its record, its own are same).
    k3 = edited_config(tmp_path, "k3.yaml", lambda c: c["sae"].update(k=3))
    _retrain(work, k3)
    assert (work / LAYER / "sae" / "sae.safetensors").read_bytes() != weights
    after = snakemake(work, "-n", STATS, config=k3)
    assert planned_jobs(after) == {"compute_feature_stats": 1}
    assert "Updated input files: results/sae/base/layer_1/sae.sha256" in after.stdout
