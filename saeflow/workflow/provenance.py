"""Provenance records: what made each result file, so it can be traced and audited.

`job()` (saeflow/workflow/script.py) writes one record per output of every rule script
after the script succeeds: rule, wildcards, params (the config subset the rule depends
on) and their hash, every input path with its content hash, the output's own
hash, the code version (git commit and dirty flag), package versions, seed, host,
scheduler job id and visible GPUs, start and end time.

Records live apart from the results people read, one JSON file per output:
`results/sae/base/layer_2/metrics.json` → `results/.provenance/sae/base/layer_2/
metrics.json.json` (outputs outside `results/` keep their full path under
`results/.provenance/`). `saeflow audit` (saeflow/workflow/audit.py) follows them back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from saeflow.workflow.io import sha256_file, sha256_json, write_json

PROVENANCE_DIR = Path("results/.provenance")
"""Where records live, relative to the workflow's working directory."""

PACKAGES = [
    "saeflow",
    "torch",
    "triton",
    "transformers",
    "safetensors",
    "datasets",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "numpy",
    "pandas",
    "pyarrow",
    "h5py",
    "scikit-learn",
    "matplotlib",
]
"""Packages whose versions every record carries (those the results depend on)."""

CODE_PATHS = ["Snakefile", "rules", "scripts", "saeflow", "kernels", "schemas"]
"""Files whose uncommitted changes mark the code version dirty (not configs, docs)."""

SNAKEMAKE_MARKER = ".snakemake_timestamp"

SCHEDULER_ENV = ["SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"]
"""Environment variables recorded as they were inside the job."""


def record_path(output: str | os.PathLike[str], root: str | Path = ".") -> Path:
    """The provenance record of `output` (a path relative to the working dir)."""
    rel = Path(os.path.relpath(Path(root) / output, root))
    if rel.parts and rel.parts[0] == "results":
        rel = Path(*rel.parts[1:])
    return Path(root) / PROVENANCE_DIR / f"{rel}.json"


def sha256_path(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, or of a folder's sorted (relative path, file hash)
    pairs, so a folder hashes the same wherever it lies. Snakemake's marker file
    in directory outputs (added after the job) is left out."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    files = sorted(
        f for f in p.rglob("*") if f.is_file() and f.name != SNAKEMAKE_MARKER
    )
    return sha256_json([[str(f.relative_to(p)), sha256_file(f)] for f in files])


def jsonable(obj: Any) -> Any:
    """A JSON-able rendering of a params value (config dataclasses become dicts)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return repr(obj)


def _git(where: str | os.PathLike[str], *args: str) -> str:
    cmd = ["git", "-C", str(where), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def code_version(where: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Git commit of the repository holding `where` and whether code files differ
    from it; {"commit": "unknown"} outside git."""
    if where is None:
        return {"commit": "unknown"}
    try:
        commit = _git(where, "rev-parse", "HEAD").strip()
        top = _git(where, "rev-parse", "--show-toplevel").strip()
        status = _git(top, "status", "--porcelain", "--", *CODE_PATHS).splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown"}
    return {"commit": commit, "dirty": bool(status), "dirty_files": status[:20]}


def package_versions() -> dict[str, str]:
    """Installed versions of PACKAGES (missing ones as "absent") and Python's."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def now() -> str:
    """The current time, ISO 8601 with time zone."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def describe_inputs(paths: list[str]) -> list[dict[str, str]]:
    """Each input path with its content hash (taken before the job reads it)."""
    return [{"path": p, "sha256": sha256_path(p)} for p in paths]


def job_record(sm: Any, started: str, inputs: list[dict[str, str]]) -> dict[str, Any]:
    """Everything the outputs of job `sm` (a Snakemake script object) share."""
    params = {k: jsonable(v) for k, v in sm.params.items()}
    return {
        "rule": sm.rule,
        "wildcards": dict(sm.wildcards.items()),
        "params": params,
        "params_sha256": sha256_json(params),
        "config_sha256": sha256_json(jsonable(sm.config)),
        "seed": params.get("seed", sm.config.get("seed")),
        "inputs": inputs,
        "outputs": list(sm.output),
        "log": list(sm.log),
        "code": code_version(sm.scriptdir),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "scheduler": {k: os.environ.get(k) for k in SCHEDULER_ENV},
        "threads": sm.threads,
        "started": started,
        "finished": now(),
    }


def write_records(record: dict[str, Any], outputs: list[str]) -> None:
    """One record per output (with the output's own hash), each written atomically."""
    for out in outputs:
        write_json(
            {"output": out, "sha256": sha256_path(out), **record}, record_path(out)
        )


def read_record(output: str | os.PathLike[str], root: str | Path = ".") -> dict | None:
    """The record of `output`, or None when it has none."""
    path = record_path(output, root)
    return json.loads(path.read_text()) if path.exists() else None
