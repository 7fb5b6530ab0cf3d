"""Provenance, audit, report and reproducibility on the real tiny workflow.

Two runs from scratch of tests/configs/tiny.yaml (the session's shared run and
one more) must give the same result files: bitwise, except for the tolerances
listed in docs/reproducibility.md (timing fields; HDF5 object timestamps). The
shared run then serves the provenance, audit and report checks.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import fresh_workdir, snakemake

from saeflow.workflow.audit import audit
from saeflow.workflow.provenance import PROVENANCE_DIR, read_record, record_path

# Fields that measure speed, not results (docs/reproducibility.md).
TIMING = re.compile(r"per_s$|_s$|seconds|elapsed|wall|duration")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert, tiny_run) -> tuple[Path, Path]:
    second = fresh_workdir(tmp_path_factory.mktemp("run_b"), tiny_bert)
    result = snakemake(second, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    return tiny_run, second


def result_files(work: Path) -> list[Path]:
    res = work / "results"
    hidden = res / PROVENANCE_DIR.name
    return sorted(
        p.relative_to(work)
        for p in res.rglob("*")
        if p.is_file() and hidden not in p.parents and p.name != "report.html"
    )


def without_timing(obj):
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def same_hdf5(a: Path, b: Path) -> bool:
    """Same datasets, values and attributes (HDF5 stores creation times)."""
    items: list[tuple[str, object, object]] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        fa.visititems(lambda name, obj: items.append((name, obj, fb.get(name))))
        names_b: list[str] = []
        fb.visit(names_b.append)
        if sorted(n for n, _, _ in items) != sorted(names_b):
            return False
        for _, x, y in items:
            if dict(x.attrs).keys() != dict(y.attrs).keys():
                return False
            for k in x.attrs:
                if not np.array_equal(x.attrs[k], y.attrs[k]):
                    return False
            if isinstance(x, h5py.Dataset) and not np.array_equal(x[()], y[()]):
                return False
    return True


def same_within_tolerance(path: Path, a: bytes, b: bytes, wa: Path, wb: Path):
    if path.suffix == ".json":
        return without_timing(json.loads(a)) == without_timing(json.loads(b))
    if path.suffix == ".csv":
        da, db = pd.read_csv(io.BytesIO(a)), pd.read_csv(io.BytesIO(b))
        keep = [c for c in da.columns if not TIMING.search(c)]
        return keep == [c for c in db.columns if not TIMING.search(c)] and da[
            keep
        ].equals(db[keep])
    if path.suffix == ".h5":
        return same_hdf5(wa / path, wb / path)
    return False


def test_two_runs_from_scratch_give_identical_results(runs):
    a, b = runs
    files = result_files(a)
    assert files == result_files(b)
    assert len(files) > 50
    exact, tolerated, different = 0, [], []
    for f in files:
        ba, bb = (a / f).read_bytes(), (b / f).read_bytes()
        if ba == bb:
            exact += 1
        elif same_within_tolerance(f, ba, bb, a, b):
            tolerated.append(str(f))
        else:
            different.append(str(f))
    print(f"{exact} bitwise identical, {len(tolerated)} within tolerance:", tolerated)
    assert not different
    assert exact > len(tolerated)


def test_every_result_file_has_a_provenance_record(tiny_run):
    work = tiny_run
    for f in result_files(work):
        owners = [p for p in [f, *f.parents] if record_path(p, work).exists()]
        assert owners, f"{f} has no provenance record"


def test_record_names_rule_inputs_code_and_packages(tiny_run):
    work = tiny_run
    rec = read_record("results/sae/base/layer_1/metrics.json", work)
    assert rec["rule"] == "train_sae"
    assert rec["wildcards"] == {"model": "base", "layer": "1"}
    assert rec["seed"] == 0 and len(rec["params_sha256"]) == 64
    assert [i["path"] for i in rec["inputs"]] == [
        "results/activations/base/layer_1/domain.h5",
        "results/activations/base/layer_1/general.h5",
    ]
    assert len(rec["code"]["commit"]) == 40 and "dirty" in rec["code"]
    assert rec["packages"]["torch"].startswith("2.13.0")
    assert rec["started"] <= rec["finished"]


def test_audit_follows_the_chain_and_flags_a_changed_corpus(tiny_run, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_run / "results", work / "results")
    target = "results/features/base/layer_1/specialization.parquet"
    clean = audit(target, work)
    assert clean.problems == []
    chain = "\n".join(clean.lines)
    assert "[build_corpus corpus=domain]" in chain and "from config:" in chain
    assert "[train_sae model=base layer=1]" in chain

    corpus = work / "results" / "corpus" / "domain.parquet"
    df = pd.read_parquet(corpus)
    df.loc[0, "text"] = "edited by hand"
    df.to_parquet(corpus)
    stale = audit(target, work)
    assert any("domain.parquet: content differs" in p for p in stale.problems)
    assert any("STALE" in p and "domain.parquet" in p for p in stale.problems)
    cli = subprocess.run(
        [sys.executable, "-m", "saeflow.cli", "audit", target, "--root", str(work)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "FLAGGED" in cli.stdout


def test_report_is_self_contained_and_captioned(tiny_run):
    work = tiny_run
    out = snakemake(work, "--report", "results/report.html", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    html = (work / "results" / "report.html").read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S)[1])
    assert len(results) >= 6  # figures and tables of the spine, both models
    for path, item in results.items():
        assert item["caption"].strip(), f"{path} has no caption"
        assert item["data_uri"].startswith("data:"), f"{path} is not embedded"
    assert not re.search(r"""<(script|img|link)[^>]+(src|href)=["']https?://""", html)
