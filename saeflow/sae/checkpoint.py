"""Training checkpoints: one file, replaced atomically, beside the rule's outputs.

A checkpoint holds everything the next step depends on (weights, optimizer state,
dead-latent counters, RNG state, data position, the curve so far), so a job killed
at any moment and started again ends with the same weights as an uninterrupted
run. It records a fingerprint of the run's config and data; a checkpoint with a
different fingerprint is ignored (and replaced), never resumed from. The folder
is not a Snakemake output, so Snakemake does not delete it when a job fails; the
trainer removes it after a successful run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from saeflow.workflow.io import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def fingerprint(obj: Any) -> str:
    """sha256 of a JSON-serialisable description of a run (config, data, seed)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def save_checkpoint(folder: str | Path, state: dict[str, Any], key: str) -> None:
    """Write `state` (tensors, numbers, lists) with fingerprint `key`, atomically."""
    with atomic_path(Path(folder) / STATE_FILE) as tmp:
        torch.save({"fingerprint": key, "state": state}, tmp)


def load_checkpoint(folder: str | Path, key: str) -> dict[str, Any] | None:
    """The saved state if `folder` holds one with fingerprint `key`, else None."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("fingerprint") != key:
        log.warning("ignoring checkpoint %s: made with another config or data", path)
        return None
    log.info("resuming from checkpoint %s", path)
    return saved["state"]


def remove_checkpoint(folder: str | Path) -> None:
    """Delete the checkpoint folder (after the run's outputs are written)."""
    shutil.rmtree(folder, ignore_errors=True)
