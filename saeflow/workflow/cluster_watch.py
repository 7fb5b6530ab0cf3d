"""Stop a SLURM run whose job the scheduler holds for a reason that never clears.

snakemake-executor-plugin-slurm polls job *states* (sacct or squeue `%i|%T`)
and keeps waiting on PENDING, whatever the reason: a job asking for more CPUs
than any node has sits there (Reason=PartitionConfig) and Snakemake prints
nothing. The plugin offers no hook into its status check (the status command
is one of two fixed queries), so the workflow's `onstart` starts this watcher
beside it: a daemon thread that asks `squeue` for the run's pending jobs and
their reasons every `SAEFLOW_PENDING_CHECK_SECONDS` (default 30) seconds. A job
held for a hopeless reason is reported (job id, rule, reason) and cancelled
with `scancel`; the plugin then sees it CANCELLED and reports it failed, and
Snakemake stops as after any failed job.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

log = logging.getLogger("saeflow")

NEVER_REASONS = {
    "PartitionConfig": "the request exceeds what the partition's nodes have",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "a time limit above the partition's MaxTime",
    "BadConstraints": "constraints no node satisfies",
    "InvalidAccount": "an account the cluster does not know",
    "InvalidQOS": "a QOS the cluster does not know",
    "AccountNotAllowed": "an account the partition does not allow",
    "QOSNotAllowed": "a QOS the partition does not allow",
    "DependencyNeverSatisfied": "a dependency that can never be met",
    "QOSMaxWallDurationPerJobLimit": "a time limit above the QOS's MaxWall",
    "AssocMaxWallDurationPerJobLimit": "a time limit above the association's",
    "QOSMaxCpuPerJobLimit": "more CPUs than the QOS allows one job",
    "AssocMaxCpuPerJobLimit": "more CPUs than the association allows one job",
    "QOSMaxMemoryPerJob": "more memory than the QOS allows one job",
    "AssocMaxMemPerJob": "more memory than the association allows one job",
    "QOSMaxGRESPerJob": "more GPUs/GRES than the QOS allows one job",
    "AssocMaxGRESPerJob": "more GPUs/GRES than the association allows one job",
}
"""Pending reasons that no amount of waiting clears (SLURM's squeue(1) reason
codes); the value says why, in the report."""

DOWN_STATES = {"down", "drain", "drng", "fail", "failg", "maint", "inval", "futr"}

NODES_UNAVAILABLE = (
    "ReqNodeNotAvail",  # the job named nodes (or a reservation) that are not up
    # SLURM 22.05's squeue %r for a job whose partition's nodes are all down or
    # drained (the reason code underneath is plain Resources).
    "Nodes required for job are DOWN, DRAINED",
)


class PendingJob(NamedTuple):
    """One pending job of the run, as squeue reports it."""

    job_id: str
    partition: str
    reason: str
    rule: str
    """From the plugin's `--comment rule_<name>[_wildcards_...]`."""


def parse_squeue(text: str) -> list[PendingJob]:
    """`squeue -h -t PENDING -o "%i|%P|%r|%k"` output as jobs."""
    jobs = []
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            job_id, partition, reason, comment = parts
            rule = comment.removeprefix("rule_").split("_wildcards_")[0]
            jobs.append(PendingJob(job_id, partition, reason, rule))
    return jobs


def _no_node_up(partition: str, run: Callable) -> bool:
    res = run(["sinfo", "-h", "-p", partition, "-o", "%t"])
    states = {s.strip().rstrip("*~#!%$@^-") for s in res.stdout.split()}
    return res.returncode == 0 and bool(states) and states <= DOWN_STATES


def hopeless(job: PendingJob, run: Callable) -> str | None:
    """Why `job` can never start, or None while waiting may still help.

    Unavailable nodes (NODES_UNAVAILABLE) count only when no node of the
    partition is up (a drained node can come back; none at all is a
    configuration problem).
    """
    code = job.reason.split(",")[0].strip()
    if code in NEVER_REASONS:
        return NEVER_REASONS[code]
    if job.reason.startswith(NODES_UNAVAILABLE) and _no_node_up(job.partition, run):
        return f"no node of partition '{job.partition}' is up"
    return None


def check_pending(
    name: str, run: Callable, report: Callable[[str], None] = log.error
) -> list[str]:
    """Report and cancel the jobs named `name` that can never start."""
    res = run(["squeue", "-h", "-t", "PENDING", "--name", name, "-o", "%i|%P|%r|%k"])
    if res.returncode != 0:
        return []
    found = []
    for job in parse_squeue(res.stdout):
        why = hopeless(job, run)
        if why is None:
            continue
        msg = (
            f"SLURM job {job.job_id} (rule {job.rule}) can never start: "
            f"Reason={job.reason} ({why}); cancelled it so the run stops instead "
            "of waiting forever. Check the rule's resources with `saeflow "
            "check-cluster`."
        )
        report(msg)
        run(["scancel", job.job_id])
        found.append(msg)
    return found


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def watch_pending(workflow: Any, interval: float | None = None) -> None:
    """Start the watcher thread for this run's jobs (named by the plugin's run
    uuid); a no-op where the executor's run id cannot be found.

    Snakemake (9.27) builds the scheduler and its executor, whose __post_init__
    sets `run_uuid` (the plugin's sbatch `--job-name`, 2.8.0), before it calls
    `onstart`; neither offers a public accessor, hence the private attribute.
    """
    executor = getattr(getattr(workflow, "scheduler", None), "_executor", None)
    name = getattr(executor, "run_uuid", None)
    if not name:
        log.warning("pending-job watcher off: the slurm executor's run id is unknown")
        return
    if interval is None:
        interval = float(os.environ.get("SAEFLOW_PENDING_CHECK_SECONDS", "30"))
    from snakemake.logging import logger  # prints where Snakemake's messages go

    tick = threading.Event()  # never set: wait() is an interruptible sleep

    def loop() -> None:
        while not tick.wait(interval):
            try:
                check_pending(name, _run, logger.error)
            except Exception as err:  # a watcher must never break the run
                log.warning("pending-job watcher: %s", err)

    threading.Thread(target=loop, name="saeflow-pending", daemon=True).start()
