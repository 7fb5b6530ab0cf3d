"""Pre-flight checks (saeflow/workflow/cluster.py) against the shipped profiles, and the
provenance helpers that need no workflow run. The checks against a real
scheduler are in tests/test_slurm.py."""

import subprocess
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
from saeflow.workflow.cluster_limits import parse_slurm_time, partition_limits
from saeflow.workflow.cluster_watch import check_pending
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


# Real output of the one-node test cluster (tests/test_slurm.py, SLURM 22.05),
# and of a second partition with limits, in the same formats.
SINFO = "debug|16|262144|gpu:fake:2\nsmall*|2|19000|(null)\nsmall*|4+|8000|(null)\n"
SCONTROL = (
    "PartitionName=debug AllowGroups=ALL Default=YES QoS=N/A DefaultTime=NONE "
    "MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED"
    " Nodes=vm State=UP TotalCPUs=16 TotalNodes=1 JobDefaults=(null) "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=16,mem=256G,node=1,billing=16\n"
    "PartitionName=small AllowGroups=ALL Default=NO MaxTime=2-12:00:00 "
    "MaxCPUsPerNode=3 MaxMemPerNode=16000 State=UP TotalCPUs=6 TotalNodes=2\n"
)


def test_partition_limits_from_sinfo_and_scontrol():
    limits = partition_limits(SINFO, SCONTROL)
    assert limits["debug"][:3] == (16, 262144, None)
    # Largest node (4 CPUs, 19000 MB) capped by MaxCPUsPerNode and MaxMemPerNode.
    assert limits["small"][:3] == (3, 16000, 3600)
    assert limits["small"].source["cpus"] == "MaxCPUsPerNode"


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("UNLIMITED", None), ("infinite", None), ("30", 30), ("30:15", 31)]
    + [("1:00:00", 60), ("2-12", 3600), ("2-12:30:00", 3630)],
)
def test_slurm_time(text, minutes):
    assert parse_slurm_time(text) == minutes


def test_requests_beyond_the_nodes_and_maxtime_are_refused_naming_both_numbers():
    cluster = ClusterInfo(
        {"debug": 2, "small": 0}, {}, None, partition_limits(SINFO, SCONTROL)
    )
    problems = check_requests(
        [
            JobRequest("train_sae", "debug", None, 1, 32, 300000, 720),
            JobRequest("finetune_model", "small", None, 0, 8, 32000, 4000),
            JobRequest("build_corpus", "small", None, 0, 1, 8000, 60),
        ],
        cluster,
        True,
    )
    assert problems == [
        "rule train_sae: threads: asks for 32 CPUs but the nodes of partition "
        "'debug' have at most 16 (sinfo CPUs per node); SLURM would leave the job "
        "PENDING (Reason=PartitionConfig) forever",
        "rule train_sae: mem_mb: asks for 300000 MB but the nodes of partition "
        "'debug' have at most 262144 MB (sinfo RealMemory)",
        "rule finetune_model: threads: asks for 8 CPUs but the nodes of partition "
        "'small' have at most 3 (MaxCPUsPerNode); SLURM would leave the job "
        "PENDING (Reason=PartitionConfig) forever",
        "rule finetune_model: mem_mb: asks for 32000 MB but the nodes of partition "
        "'small' have at most 16000 MB (MaxMemPerNode)",
        "rule finetune_model: runtime: asks for 4000 min but partition 'small' "
        "allows at most 3600 min (MaxTime=2-12:00:00)",
    ]


def test_shipped_profile_threads_memory_and_runtime_are_read():
    reqs = {
        r.rule: r
        for r in requests_from_profile(ROOT / "profiles" / "slurm", ["train_sae"])
    }
    assert reqs["train_sae"][4:] == (8, 64000, 720)


def test_hopeless_pending_reasons(monkeypatch):
    squeue = (
        "12|debug|PartitionConfig|rule_train_sae_wildcards_base_1\n"
        "13|debug|Resources|rule_build_corpus\n"
        "14|gpu|ReqNodeNotAvail, UnavailableNodes:n[1-2]|rule_cache_activations\n"
        "15|debug|ReqNodeNotAvail, UnavailableNodes:n3|rule_label_features\n"
        "16|gpu|Nodes required for job are DOWN, DRAINED or reserved for jobs in"
        " higher priority partitions|rule_train_sae\n"
    )
    calls = []

    def run(cmd):
        calls.append(cmd)
        out = squeue if cmd[0] == "squeue" else ""
        if cmd[0] == "sinfo":  # every node of gpu is down; debug has one idle
            out = "down*\ndrain\n" if cmd[3] == "gpu" else "idle\ndrain\n"
        return subprocess.CompletedProcess(cmd, 0, out, "")

    found = check_pending("run-uuid", run, report=lambda m: None)

    assert [m.split(" can never")[0] for m in found] == [
        "SLURM job 12 (rule train_sae)",
        "SLURM job 14 (rule cache_activations)",
        "SLURM job 16 (rule train_sae)",  # SLURM 22.05's words for the same
    ]
    assert "Reason=PartitionConfig (the request exceeds" in found[0]
    assert "no node of partition 'gpu' is up" in found[1]
    assert ["scancel", "12"] in calls and ["scancel", "14"] in calls
    assert ["scancel", "13"] not in calls and ["scancel", "15"] not in calls
    assert [c for c in calls if c[0] == "squeue"][0][5] == "run-uuid"


def test_make_tiny_model_cli_writes_tiny_yamls_model_deterministically(
    tmp_path, tiny_bert
):
    """The command (the fixture calls the same function): what tiny.yaml needs,
    the same weights every time."""
    import json

    from safetensors.torch import load_file

    from saeflow.cli import main

    assert main(["make-tiny-model", str(tmp_path / "m")]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"]) == (2, 32)
    assert (tmp_path / "m" / "tokenizer.json").exists()
    made = load_file(tmp_path / "m" / "model.safetensors")
    fixture = load_file(tiny_bert / "model.safetensors")
    assert made.keys() == fixture.keys()
    assert all((made[k] == fixture[k]).all() for k in made)
