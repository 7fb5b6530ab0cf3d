"""What one job may ask of a SLURM partition: CPUs, memory and time.

A job asking for more CPUs than any node of its partition has is accepted by
sbatch and then pends forever (Reason=PartitionConfig); more memory than a node
has is refused at submission, after the workflow has started; a runtime above
the partition's MaxTime pends forever (PartitionTimeLimit) where the cluster
does not enforce limits at submission. These limits are read from

- ``sinfo -h -o "%R|%c|%m|%G"``: per partition and node configuration, the
  CPUs and memory (MB, RealMemory) of one node, and its GRES;
- ``scontrol show partition -o``: MaxTime, MaxCPUsPerNode, MaxMemPerNode,

and compared with each rule's threads (``--cpus-per-task``), ``mem_mb``
(``--mem``) and ``runtime`` (``-t``, minutes), as the slurm executor plugin
submits them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

UNLIMITED = {"UNLIMITED", "INFINITE", "NONE", "N/A", ""}


class PartitionLimits(NamedTuple):
    """The most one job may ask of a partition (None: no limit known)."""

    cpus: int | None
    """CPUs of its largest node, capped by MaxCPUsPerNode."""
    mem_mb: int | None
    """Memory (MB) of its largest node, capped by MaxMemPerNode."""
    max_time_min: int | None
    """MaxTime in minutes."""
    source: dict[str, str]
    """Where each number came from, quoted in messages."""


def parse_slurm_time(text: str) -> int | None:
    """SLURM time ("UNLIMITED", "30", "1:00:00", "2-12:00:00") in whole minutes."""
    text = text.strip().upper()
    if text in UNLIMITED:
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # "D-H", "D-H:M", "D-H:M:S"
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # "H:M:S"
        h, m, s = parts
    else:  # "M", "M:S" (a bare number is minutes, as for sbatch -t)
        h, m, s = 0, parts[0], (parts + [0])[1]
    return int(days or 0) * 1440 + h * 60 + m + (1 if s else 0)


def parse_memory_mb(text: str | int | float) -> int | None:
    """A memory amount ("32000", "32G", "16GB", "512M", 8000) in MB."""
    if isinstance(text, int | float):
        return int(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m:
        return None
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[m.group(2)]
    return int(float(m.group(1)) * scale)


def parse_scontrol_partitions(text: str) -> dict[str, dict[str, str]]:
    """`scontrol show partition -o` (one partition per line) as key → value."""
    out = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "PartitionName" in fields:
            out[fields["PartitionName"]] = fields
    return out


def _number(text: str) -> int | None:
    text = text.strip().rstrip("+")
    return int(text) if text.isdigit() else None


def partition_limits(sinfo: str, scontrol: str) -> dict[str, PartitionLimits]:
    """Per partition, from `sinfo -h -o "%R|%c|%m|%G"` and `scontrol show
    partition -o` output (a partition's default marker `*` is dropped)."""
    nodes: dict[str, tuple[int | None, int | None]] = {}
    for line in sinfo.splitlines():
        if not line.strip():
            continue
        name, cpus, mem = (line.split("|") + ["", ""])[:3]
        name = name.strip().rstrip("*")
        c, m = _number(cpus), _number(mem)
        old_c, old_m = nodes.get(name, (None, None))
        nodes[name] = (_max(old_c, c), _max(old_m, m))
    parts = parse_scontrol_partitions(scontrol)
    limits = {}
    for name in sorted(set(nodes) | set(parts)):
        cpus, mem = nodes.get(name, (None, None))
        p = parts.get(name, {})
        source = {"cpus": "sinfo CPUs per node", "mem_mb": "sinfo RealMemory"}
        cap_c = _number(p.get("MaxCPUsPerNode", ""))
        if cap_c is not None and (cpus is None or cap_c < cpus):
            cpus, source["cpus"] = cap_c, "MaxCPUsPerNode"
        cap_m = _number(p.get("MaxMemPerNode", ""))
        if cap_m is not None and (mem is None or cap_m < mem):
            mem, source["mem_mb"] = cap_m, "MaxMemPerNode"
        source["runtime"] = f"MaxTime={p.get('MaxTime', 'unknown')}"
        limits[name] = PartitionLimits(
            cpus, mem, parse_slurm_time(p.get("MaxTime", "UNLIMITED")), source
        )
    return limits


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def resource_problems(
    partition: str,
    limits: PartitionLimits,
    threads: int | None,
    mem_mb: int | None,
    runtime: int | None,
) -> list[str]:
    """One sentence per resource a job asks beyond `limits`, both numbers named."""
    out = []
    where = f"partition '{partition}'"
    if threads and limits.cpus is not None and threads > limits.cpus:
        out.append(
            f"threads: asks for {threads} CPUs but the nodes of {where} have at "
            f"most {limits.cpus} ({limits.source['cpus']}); SLURM would leave the "
            "job PENDING (Reason=PartitionConfig) forever"
        )
    if mem_mb and limits.mem_mb is not None and mem_mb > limits.mem_mb:
        out.append(
            f"mem_mb: asks for {mem_mb} MB but the nodes of {where} have at most "
            f"{limits.mem_mb} MB ({limits.source['mem_mb']})"
        )
    if runtime and limits.max_time_min is not None and runtime > limits.max_time_min:
        out.append(
            f"runtime: asks for {runtime} min but {where} allows at most "
            f"{limits.max_time_min} min ({limits.source['runtime']})"
        )
    return out
