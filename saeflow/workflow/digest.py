"""Content digests beside folder outputs, so identical results rerun nothing.

Snakemake judges a consumer by modification times, and forgives a newer input
only when the input's sha256 equals the one recorded when the consumer last ran.
It never checksums folders, nor files above `--max-checksum-file-size` (1 MB by
default; an SAE's weights are 9 MB and up). So an SAE retrained to the same
bytes (resumed after a kill, forced again, copied back without its times) would
rerun every rule that reads it.

The fix is one small file: a rule that writes the folder `x` also declares the
output `x.sha256`, and `job()` fills it after the script succeeds with one
`sha256sum` line per file of `x` (`sha256sum -c x.sha256` checks it from the
parent folder). Consumers read the folder as `ancient(x)` (it still orders the
jobs and must exist, but its time no longer reruns anything) and list `x.sha256`
beside it: that small file's content is what Snakemake compares. Within one run
a producer that must run still reruns its consumers; across runs a rebuilt but
identical folder leaves them alone. docs/reproducibility.md has the story.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from saeflow.workflow.io import atomic_path, sha256_file
from saeflow.workflow.provenance import SNAKEMAKE_MARKER

DIGEST_SUFFIX = ".sha256"
"""A declared output `<x>.sha256` beside the output `<x>` is `<x>`'s digest."""


def digest_text(path: str | os.PathLike[str]) -> str:
    """`sha256sum` lines for a file, or for every file under a folder (sorted),
    each named relative to the parent of `path`."""
    p = Path(path)
    files = (
        sorted(f for f in p.rglob("*") if f.is_file() and f.name != SNAKEMAKE_MARKER)
        if p.is_dir()
        else [p]
    )
    return "".join(
        f"{sha256_file(f)}  {f.relative_to(p.parent).as_posix()}\n" for f in files
    )


def write_digests(outputs: list[str]) -> list[str]:
    """Write each output `<x>.sha256` whose `<x>` is also in `outputs`; return the
    digests written."""
    written = []
    for out in outputs:
        target = out.removesuffix(DIGEST_SUFFIX)
        if out.endswith(DIGEST_SUFFIX) and target in outputs:
            with atomic_path(out) as tmp:
                tmp.write_text(digest_text(target))
            written.append(out)
    return written


FOLDER_OUTPUTS = (
    "sae/*/layer_*/sae",
    "sae/*/layer_*/replicates/r*/sae",
    "crosscoder/layer_*/seed_*/crosscoder",
)
"""Folder outputs (below results/) that carry a digest."""


def add_missing_digests(results: str | os.PathLike[str]) -> list[Path]:
    """Write the digest of every folder output under `results` that lacks one.

    For results made before digests existed: their producers would otherwise see
    a missing output and retrain every SAE once. Only complete folders exist
    (they are written atomically), so each is digested as it stands.
    """
    root = Path(results)
    written = []
    for pattern in FOLDER_OUTPUTS:
        for folder in sorted(root.glob(pattern)):
            digest = folder.with_name(folder.name + DIGEST_SUFFIX)
            if folder.is_dir() and not digest.exists():
                with atomic_path(digest) as tmp:
                    tmp.write_text(digest_text(folder))
                written.append(digest)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", nargs="?", default="results", help="the results folder"
    )


def main(args: argparse.Namespace) -> int:
    written = add_missing_digests(args.results)
    for path in written:
        print(path)
    print(
        f"wrote {len(written)} digest(s) under {args.results}: the SAEs and "
        "crosscoders there will not retrain for want of them"
    )
    return 0
