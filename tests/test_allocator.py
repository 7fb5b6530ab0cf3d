"""keep_freed_memory: a large tensor freed and made again inside the loop's
scope reuses its pages (no page faults); outside it, glibc maps fresh ones.

Measured in a fresh interpreter with the environment a training job has, i.e.
without TRITON_INTERPRET (the test suite sets it): with Triton's interpreter
loaded glibc maps the block afresh anyway, as it does whenever the heap cannot
grow in place, and the setting saves nothing there."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt"
)
PROBE = """
import resource, torch
from saeflow.sae.allocator import keep_freed_memory
BLOCK = 64 * 2**20 // 4  # 64 MiB of floats, above glibc's largest mmap threshold
def faults(rounds=4):
    torch.ones(BLOCK)  # first touch in this state, not counted
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        torch.ones(BLOCK)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds
outside = faults()
with keep_freed_memory() as taken:
    inside = faults()
print(outside, taken, inside, faults())
"""


def test_freed_blocks_stay_mapped_inside_and_defaults_come_back():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    before, taken, inside, after = float(out[0]), out[1], float(out[2]), float(out[3])
    pages = 64 * 2**20 // 4096
    assert before > pages / 2, "glibc's default should map the block afresh"
    assert taken == "True"
    assert inside < pages / 100, "inside, the freed block's pages must be reused"
    assert after > pages / 2, "the defaults must come back on exit"
