"""The Triton kernels compile for real GPUs (A100 sm_80, H100/H200 sm_90), offline.

The interpreter tests in test_kernels.py prove the maths, not that the GPU
compiler accepts the code; this lowers every launch of a training step to a
cubin with the ptxas that ships with Triton. It runs in a subprocess because the
suite's ``TRITON_INTERPRET=1`` replaces the kernels.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHES = 5  # per target, dtype and shape: see kernels.compile_check._launches


def _run_check(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kernels.compile_check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("target", ["sm_80", "sm_90"])
def test_every_launch_compiles_to_cubin(target):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    shapes = ["100:1000:1", "384:3072:32"]  # D not a power of two, M ragged, k=1
    dtypes = ["float32", "bfloat16"]
    done = _run_check(
        ["--targets", target, "--dtypes", *dtypes, "--shapes", *shapes], env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:-1]]
    assert len(rows) == LAUNCHES * len(shapes) * len(dtypes)
    assert {r[0] for r in rows} == {target}
    assert f"{len(rows)} launches compiled to cubin" in done.stdout


def test_refuses_to_run_under_the_interpreter():
    done = _run_check(["--targets", "sm_90"], {**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 2
    assert "unset TRITON_INTERPRET" in done.stderr
