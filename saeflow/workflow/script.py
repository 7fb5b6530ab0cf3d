"""What every rule script does around its one call into the library.

`with job(snakemake) as sm:` sends stderr and logging to the rule's log, sets
torch's thread count from the rule's `threads`, and is the single place where
per-job bookkeeping lives: after the body succeeds it fills each declared digest
output `<x>.sha256` of an output `<x>` (saeflow/workflow/digest.py) and writes a
provenance record for every output (saeflow/workflow/provenance.py). The
scheduler's job id and CUDA_VISIBLE_DEVICES go to the log and the record; the
job's CPU seconds and peak RSS (getrusage: exact, where Snakemake's benchmark
files sample every 30 s after a job's first 30 s) close the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saeflow.workflow.config import untracked
from saeflow.workflow.digest import write_digests
from saeflow.workflow.provenance import describe_inputs, job_record, now, write_records

log = logging.getLogger("saeflow.workflow.script")


def setup_logging(log_path: str | Path | None, threads: int | None = None) -> None:
    """Send stderr (progress bars, warnings) and logging to the rule's log file."""
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if threads:
        # Light jobs never import torch (seconds of start-up each); for the others
        # the thread count is set whether torch came in before this call or after.
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


class _Job:
    """The script's `snakemake` object with config dataclasses unwrapped in params.

    Rules pass config dataclasses as `Tracked` dicts so that Snakemake's rerun
    triggers see them; scripts get the dataclasses. `snakemake.params` builds a
    fresh object on each access, so the unwrapped copy is kept here.
    """

    def __init__(self, sm: Any) -> None:
        self._sm = sm
        self.params = sm.params
        for name, value in list(self.params.items()):
            setattr(self.params, name, untracked(value))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sm, name)


@contextlib.contextmanager
def job(sm: Any) -> Iterator[Any]:
    """Set up one Snakemake job (the `snakemake` object of a script) and yield it;
    on success, write its declared digests and each output's provenance record."""
    setup_logging(sm.log[0] if sm.log else None, sm.threads)
    started, clock = now(), time.perf_counter()
    log.info(
        "rule %s %s on %s; SLURM_JOB_ID=%s CUDA_VISIBLE_DEVICES=%s",
        sm.rule,
        dict(sm.wildcards.items()),
        socket.gethostname(),
        os.environ.get("SLURM_JOB_ID"),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    # Hashed before the body reads them: the record names what the job consumed.
    inputs = describe_inputs(list(sm.input))
    yield _Job(sm)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 writes outputs
        write_digests(list(sm.output))  # <x>.sha256 beside <x> (workflow/digest.py)
        write_records(job_record(sm, started, inputs), list(sm.output))
    log.info("resources: %s", json.dumps(usage(clock)))


def usage(since: float) -> dict[str, float]:
    """Wall seconds since `since` (perf_counter), CPU seconds (user + system, this
    process and its waited-for children) and peak RSS in MB of either."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": round(time.perf_counter() - since, 2),
        "cpu_s": round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 2),
        "max_rss_mb": round(max(own.ru_maxrss, kids.ru_maxrss) / 1024, 1),
    }
