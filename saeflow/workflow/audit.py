"""`saeflow audit PATH`: the chain of jobs from a result back to the raw corpora
and the config, from the provenance records (saeflow/workflow/provenance.py), with every
file whose content no longer matches what the records say flagged.

A result is STALE when an input recorded in its chain has changed on disk since
the job read it, MODIFIED when the file itself differs from what its job wrote,
MISSING when it is gone. The exit code is 1 when anything is flagged.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import NamedTuple

from saeflow.workflow.provenance import read_record, sha256_path


class Audit(NamedTuple):
    """What `audit` found."""

    lines: list[str]
    """The chain, one line per file (indented by depth) plus detail lines."""
    problems: list[str]
    """One sentence per flagged file; empty when everything matches."""


def _current_hash(path: Path) -> str | None:
    return sha256_path(path) if path.exists() else None


def audit(path: str | os.PathLike[str], root: str | Path = ".") -> Audit:
    """Follow the records from `path` (relative to the working dir `root`)."""
    root = Path(root)
    rel = os.path.relpath(Path(root, path), root)
    lines: list[str] = []
    problems: list[str] = []
    if read_record(rel, root) is None:
        problems.append(f"{rel}: no provenance record (not made by a saeflow job)")
    _walk(rel, root, 0, set(), lines, problems)
    return Audit(lines, problems)


def _walk(
    path: str,
    root: Path,
    depth: int,
    seen: set[str],
    lines: list[str],
    problems: list[str],
) -> None:
    pad = "  " * depth
    rec = read_record(path, root)
    if rec is None:
        lines.append(f"{pad}{path}  (source file: no record)")
        return
    current = _current_hash(root / path)
    status = "ok"
    if current is None:
        status = "MISSING"
    elif current != rec["sha256"]:
        status = "MODIFIED"
    wildcards = "".join(f" {k}={v}" for k, v in rec["wildcards"].items())
    lines.append(f"{pad}{path}  [{rec['rule']}{wildcards}]  {status}")
    if path in seen:
        lines.append(f"{pad}  (chain shown above)")
        return
    if status == "MISSING":
        problems.append(f"{path}: missing (its record remains)")
    elif status == "MODIFIED":
        problems.append(f"{path}: content differs from what rule {rec['rule']} wrote")
    seen.add(path)
    code = rec["code"]
    dirty = " +uncommitted changes" if code.get("dirty") else ""
    lines.append(
        f"{pad}  made {rec['finished']} on {rec['host']}, code {code['commit'][:12]}"
        f"{dirty}, seed {rec['seed']}, params sha256 {rec['params_sha256'][:12]},"
        f" config sha256 {rec['config_sha256'][:12]}"
    )
    if not rec["inputs"]:
        params = json.dumps(rec["params"], sort_keys=True)
        lines.append(f"{pad}  from config: {params}")
    for inp in rec["inputs"]:
        now = _current_hash(root / inp["path"])
        if now != inp["sha256"]:
            what = "is missing" if now is None else "changed"
            problems.append(
                f"{path}: STALE, its input {inp['path']} {what} since rule"
                f" {rec['rule']} read it"
            )
            lines.append(f"{pad}  STALE input: {inp['path']} {what}")
        _walk(inp["path"], root, depth + 1, seen, lines, problems)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="result files or folders to audit")
    parser.add_argument(
        "--root", default=".", help="the workflow's working directory (default: .)"
    )


def main(args: argparse.Namespace) -> int:
    """Print each path's chain, then what is flagged; 1 if anything is."""
    flagged = False
    for path in args.paths:
        result = audit(path, args.root)
        print("\n".join(result.lines))
        for problem in result.problems:
            print(f"FLAGGED: {problem}")
        if not result.problems:
            print("all recorded hashes match the files on disk")
        flagged |= bool(result.problems)
    return 1 if flagged else 0
