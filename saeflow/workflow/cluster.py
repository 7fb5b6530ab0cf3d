"""Pre-flight check of a SLURM run, before any job is submitted.

Every job must name a partition that exists and an account (unless the profile
says `slurm-no-account: true`), and no job may ask for more GPUs, CPUs
(threads) or memory than a node of its partition has, nor a runtime above its
MaxTime (cluster_limits.py). The cluster is asked with `sinfo` (partitions,
their nodes' CPUs, memory and GPU GRES), `scontrol show partition` (MaxTime,
MaxCPUsPerNode, MaxMemPerNode) and, where accounting runs, `sacctmgr` (the
user's accounts). Once jobs are submitted, cluster_watch.py stops the run when
one is held for a reason that never clears.

Two entry points share the checks: `preflight(workflow)`, called by the
workflow's `onstart` when the executor is slurm (so `snakemake --profile
profiles/slurm` stops before submitting), and `saeflow check-cluster --profile
profiles/slurm`, which checks a profile's resources without building the DAG.
"""

from __future__ import annotations

import argparse
import getpass
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from saeflow.workflow.cluster_limits import (
    PartitionLimits,
    parse_memory_mb,
    partition_limits,
    resource_problems,
)

GPU_RULES = [
    "cache_activations",
    "train_sae",
    "train_sae_replicate",
    "finetune_model",
    "label_features",
]
"""Rules the SLURM profile gives GPUs (checked by the tests against the profile)."""


def _gpu_count(gres: str) -> int:
    """GPUs in one GRES item: "gpu" → 1, "gpu:2" and "gpu:a100:2(S:0)" → 2."""
    parts = re.sub(r"\(.*?\)", "", gres).strip().split(":")
    if parts[0] != "gpu":
        return 0
    return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1


class JobRequest(NamedTuple):
    """What one rule's jobs ask the scheduler for."""

    rule: str
    partition: str | None
    account: str | None
    gpus: int
    threads: int | None = None
    """CPUs per task (the rule's threads)."""
    mem_mb: int | None = None
    runtime: int | None = None
    """Minutes."""


class ClusterInfo(NamedTuple):
    """What the scheduler offers."""

    partitions: dict[str, int]
    """Partition name → most GPUs on one of its nodes (0: no GPU GRES)."""
    gres: dict[str, str]
    """Partition name → GRES as sinfo prints it (quoted in messages)."""
    accounts: set[str] | None
    """The user's accounts; None when accounting (slurmdbd) is not running."""
    limits: dict[str, PartitionLimits] | None = None
    """Partition name → CPUs, memory and time one job may ask (None: unchecked)."""


class ClusterCheckError(RuntimeError):
    """Raised by `preflight` with every problem found, one per line."""


def gpus_requested(resources: Mapping[str, Any]) -> int:
    """GPUs asked for through `gres` ("gpu", "gpu:2", "gpu:a100:2") or `gpu=N`."""
    gres = str(resources.get("gres") or "")
    return max(int(resources.get("gpu") or 0), *map(_gpu_count, gres.split(",")))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def query_cluster() -> ClusterInfo:
    """Ask sinfo (and sacctmgr) what this cluster has; fail clearly off-cluster."""
    if shutil.which("sinfo") is None:
        raise ClusterCheckError(
            "sinfo not found: run SLURM workflows on a machine with the SLURM client"
        )
    res = _run(["sinfo", "-h", "-o", "%R|%c|%m|%G"])
    if res.returncode != 0:
        raise ClusterCheckError(f"sinfo failed: {res.stderr.strip()}")
    part = _run(["scontrol", "show", "partition", "-o"])
    limits = partition_limits(res.stdout, part.stdout if part.returncode == 0 else "")
    partitions: dict[str, int] = {}
    gres: dict[str, str] = {}
    for line in res.stdout.splitlines():
        name, _, _, g = line.strip().split("|", 3)
        gpus = map(_gpu_count, re.split(r",(?![^(]*\))", g))
        partitions[name] = max(partitions.get(name, 0), *gpus)
        gres[name] = ",".join(filter(None, [gres.get(name), g]))
    acc = _run(
        ["sacctmgr", "-n", "-P", "list", "assoc", f"user={getpass.getuser()}"]
        + ["format=account"]
    )
    accounts = None
    if acc.returncode == 0 and acc.stdout.strip():
        accounts = {a.strip().lower() for a in acc.stdout.split()}
    return ClusterInfo(partitions, gres, accounts, limits)


def check_requests(
    requests: Iterable[JobRequest], cluster: ClusterInfo, no_account: bool
) -> list[str]:
    """Every problem with `requests` on `cluster`, one sentence each (rules that
    share a problem are named together)."""
    found: dict[str, list[str]] = {}
    known = ", ".join(sorted(cluster.partitions)) or "none"
    for r in requests:
        for problem in _problems(r, cluster, no_account, known):
            found.setdefault(problem, []).append(r.rule)
    return [
        f"rule{'s' if len(rules) > 1 else ''} {', '.join(rules)}: {problem}"
        for problem, rules in found.items()
    ]


def _problems(
    r: JobRequest, cluster: ClusterInfo, no_account: bool, known: str
) -> list[str]:
    out = []
    if not r.partition:
        out.append(
            "no slurm_partition; set default-resources: slurm_partition in the"
            f" profile (this cluster has: {known})"
        )
    elif r.partition not in cluster.partitions:
        out.append(f"partition '{r.partition}' does not exist (sinfo lists: {known})")
    elif r.gpus > cluster.partitions[r.partition]:
        out.append(
            f"asks for {r.gpus} GPU(s) but the nodes of partition '{r.partition}'"
            f" have at most {cluster.partitions[r.partition]}"
            f" (sinfo GRES: {cluster.gres[r.partition]})"
        )
    if r.partition in (cluster.limits or {}):
        out += resource_problems(
            r.partition, cluster.limits[r.partition], r.threads, r.mem_mb, r.runtime
        )
    if no_account:
        return out
    if not r.account:
        out.append(
            "no slurm_account; set default-resources: slurm_account in the profile,"
            " or slurm-no-account: true where the cluster has no accounts"
        )
    elif cluster.accounts is not None and r.account.lower() not in cluster.accounts:
        out.append(
            f"account '{r.account}' is not yours"
            f" (sacctmgr lists: {', '.join(sorted(cluster.accounts))})"
        )
    return out


def _unique(requests: Iterable[JobRequest]) -> list[JobRequest]:
    return sorted(set(requests))


def preflight(workflow: Any) -> None:
    """Check the jobs about to run when the executor is slurm; raise if unfit.

    Jobs running inside a SLURM allocation (executor slurm-jobstep) skip it.
    """
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    requests = _unique(
        JobRequest(
            job.rule.name,
            job.resources.get("slurm_partition"),
            job.resources.get("slurm_account"),
            gpus_requested(job.resources),
            job.threads,
            _int(job.resources.get("mem_mb")),
            _int(job.resources.get("runtime")),
        )
        for job in workflow.dag.needrun_jobs()
        if not job.is_local
    )
    no_account = bool(getattr(workflow.executor_settings, "no_account", False))
    problems = check_requests(requests, query_cluster(), no_account)
    if problems:
        raise ClusterCheckError(
            "the cluster cannot run these jobs as configured; nothing was"
            " submitted:\n  " + "\n  ".join(problems)
        )
    from saeflow.workflow.cluster_watch import watch_pending

    watch_pending(workflow)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def requests_from_profile(
    profile: str | Path, rules: Iterable[str]
) -> list[JobRequest]:
    """What each of `rules` asks for under a profile's default/set-resources."""
    cfg = yaml.safe_load((Path(profile) / "config.yaml").read_text()) or {}
    default = _resources(cfg.get("default-resources"))
    per_rule = cfg.get("set-resources") or {}
    threads = _resources(cfg.get("set-threads"))
    out = []
    for rule in rules:
        res = {**default, **_resources(per_rule.get(rule))}
        mem = res.get("mem_mb")
        mem = parse_memory_mb(mem) if mem is not None else None
        if mem is None and res.get("mem") is not None:
            mem = parse_memory_mb(res["mem"])
        out.append(
            JobRequest(
                rule,
                res.get("slurm_partition") or None,
                res.get("slurm_account") or None,
                gpus_requested(res),
                int(threads[rule]) if rule in threads else None,
                mem,
                _runtime_minutes(res.get("runtime")),
            )
        )
    return out


def _runtime_minutes(value: Any) -> int | None:
    """A profile's runtime: minutes (60, "60") or Snakemake's "2h", "1d", "90m"."""
    if value is None:
        return None
    if isinstance(value, int | float) or str(value).strip().isdigit():
        return int(value)
    units = {"d": 1440, "h": 60, "m": 1, "s": 1 / 60}
    found = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", str(value).lower())
    return int(sum(float(n) * units[u] for n, u in found)) if found else None


def _resources(spec: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """A profile's resources, given as a mapping or as NAME=VALUE strings."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    return dict(s.split("=", 1) for s in spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default="profiles/slurm", help="folder holding config.yaml"
    )
    parser.add_argument(
        "--rules",
        nargs="+",
        default=None,
        help="rules to check (default: those the profile sets resources for)",
    )


def main(args: argparse.Namespace) -> int:
    """Print each problem; 1 if there is any."""
    cfg = yaml.safe_load((Path(args.profile) / "config.yaml").read_text()) or {}
    rules = args.rules or sorted(cfg.get("set-resources") or {}) or ["(default)"]
    requests = requests_from_profile(args.profile, rules)
    try:
        problems = check_requests(
            requests, query_cluster(), bool(cfg.get("slurm-no-account"))
        )
    except ClusterCheckError as e:
        problems = [str(e)]
    for p in problems:
        print(f"PROBLEM: {p}")
    if not problems:
        print(f"{args.profile}: {len(requests)} rule(s) fit this cluster")
    return 1 if problems else 0
