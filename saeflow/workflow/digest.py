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
