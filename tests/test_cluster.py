"""Pre-flight checks (saeflow/workflow/cluster.py) against the shipped profiles, and the
provenance helpers that need no workflow run. The checks against a real
scheduler are in tests/test_slurm.py."""

from pathlib import Path

import pytest
import yaml

from saeflow.workflow.cluster import (
    GPU_RULES,
    ClusterInfo,
    JobRequest,
    check_requests,
    gpus_requested,
    requests_from_profile,
)
from saeflow.workflow.provenance import record_path, sha256_path

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ClusterInfo(
    {"cpu": 0, "gpu": 2}, {"cpu": "(null)", "gpu": "gpu:a100:2"}, None
)


@pytest.mark.parametrize(
    ("resources", "n"),
    [
        ({}, 0),
        ({"gpu": 2}, 2),
        ({"gres": "gpu"}, 1),
        ({"gres": "gpu:3"}, 3),
        ({"gres": "gpu:a100:4"}, 4),
        ({"gres": "tmpdisk:100"}, 0),
    ],
)
def test_gpus_requested(resources, n):
    assert gpus_requested(resources) == n


def test_slurm_profile_gives_gpu_rules_a_gpu_and_nothing_else():
    reqs = requests_from_profile(
        ROOT / "profiles" / "slurm", GPU_RULES + ["build_corpus"]
    )
    assert {r.rule: r.gpus for r in reqs} == {
        **dict.fromkeys(GPU_RULES, 1),
        "build_corpus": 0,
    }
    # Shipped without partition and account: the user must set them.
    assert all(r.partition is None and r.account is None for r in reqs)


def test_workstation_profile_counts_one_gpu():
    cfg = yaml.safe_load(
        (ROOT / "profiles" / "workstation" / "config.yaml").read_text()
    )
    assert cfg["resources"]["gpu"] == 1
    assert all(cfg["set-resources"][r]["gpu"] == 1 for r in GPU_RULES)


def test_missing_partition_and_account_are_named():
    problems = check_requests([JobRequest("train_sae", None, None, 1)], CLUSTER, False)
    assert any("no slurm_partition" in p and "cpu, gpu" in p for p in problems)
    assert any("no slurm_account" in p and "slurm-no-account" in p for p in problems)
    assert (
        check_requests([JobRequest("train_sae", "gpu", None, 1)], CLUSTER, True) == []
    )


def test_gpu_request_on_partition_without_gpus_is_refused():
    problems = check_requests(
        [JobRequest("train_sae", "cpu", None, 1), JobRequest("x", "gpu", None, 3)],
        CLUSTER,
        True,
    )
    assert problems == [
        "rule train_sae: asks for 1 GPU(s) but the nodes of partition 'cpu' have at"
        " most 0 (sinfo GRES: (null))",
        "rule x: asks for 3 GPU(s) but the nodes of partition 'gpu' have at most 2"
        " (sinfo GRES: gpu:a100:2)",
    ]


def test_unknown_partition_and_foreign_account():
    cluster = CLUSTER._replace(accounts={"lab_a"})
    problems = check_requests([JobRequest("r", "gpux", "lab_b", 0)], cluster, False)
    assert problems == [
        "rule r: partition 'gpux' does not exist (sinfo lists: cpu, gpu)",
        "rule r: account 'lab_b' is not yours (sacctmgr lists: lab_a)",
    ]


def test_record_path_mirrors_results():
    assert record_path("results/sae/base/layer_2/metrics.json") == Path(
        "results/.provenance/sae/base/layer_2/metrics.json.json"
    )
    assert record_path("models/x", "/w") == Path("/w/results/.provenance/models/x.json")


def test_folder_hash_ignores_snakemake_marker_and_location(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d / "sub").mkdir(parents=True)
        (tmp_path / d / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "b" / ".snakemake_timestamp").write_text("")
    assert sha256_path(tmp_path / "a") == sha256_path(tmp_path / "b")
    (tmp_path / "b" / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert sha256_path(tmp_path / "a") != sha256_path(tmp_path / "b")
