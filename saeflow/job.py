"""What every rule script does around its one call into the library.

`with job(snakemake) as sm:` sends stderr and logging to the rule's log, sets
torch's thread count from the rule's `threads`, and is the single place where
per-job bookkeeping lives.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


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
        torch.set_num_threads(threads)


@contextlib.contextmanager
def job(sm: Any) -> Iterator[Any]:
    """Set up one Snakemake job (the `snakemake` object of a script) and yield it."""
    setup_logging(sm.log[0] if sm.log else None, sm.threads)
    yield sm
