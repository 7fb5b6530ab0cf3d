"""bench/scale.py's growth fit and benchmark reading, on made-up timings."""

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_growth_recovers_planted_exponents(scale):
    tokens = [2048, 8192, 2048, 8192, 32768]
    latents = [6144, 6144, 24576, 24576, 6144]
    secs = [3.0 * t**1.0 * m**0.5 for t, m in zip(tokens, latents, strict=True)]
    fit = scale.fit_growth(tokens, latents, secs)
    assert fit.tokens_exp == pytest.approx(1.0, abs=1e-9)
    assert fit.latents_exp == pytest.approx(0.5, abs=1e-9)
    assert math.exp(fit.log_a) == pytest.approx(3.0, rel=1e-9)


def test_fit_growth_one_width_leaves_latents_out(scale):
    fit = scale.fit_growth([1000, 4000], [768, 768], [10.0, 160.0])
    assert fit.tokens_exp == pytest.approx(2.0)
    assert math.isnan(fit.latents_exp)


def test_fit_growth_refuses_zero_times(scale):
    with pytest.raises(ValueError, match="positive"):
        scale.fit_growth([1, 2], [1, 1], [0.0, 1.0])


def test_read_benchmarks_names_rules(scale, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("work") / "benchmarks"
    header = (
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load"
        "\tcpu_time\n"
    )
    for rel, secs in [
        ("sae/base/layer_6.tsv", 12.5),
        ("sae/base/layer_6/replicate_1.tsv", 13.0),
        ("compare/layer_6/match_features.tsv", 40.0),
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            header + f"{secs}\t0:00:12\t812.5\t900\t800\t805\t1.0\t64.0\t90\t9.5\n"
        )
    # A job log's closing resources line (exact) wins over the sampled TSV.
    log = tmp_path.parent / "logs" / "compare" / "layer_6" / "match_features.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        'x INFO saeflow.workflow.script: resources: {"wall_s": 39.0, '
        '"cpu_s": 37.5, "max_rss_mb": 1500.0}\n'
    )
    jobs = {j.path: j for j in scale.read_benchmarks(tmp_path)}
    assert jobs["compare/layer_6/match_features.tsv"].cpu_s == 37.5
    assert jobs["compare/layer_6/match_features.tsv"].max_rss_mb == 1500.0
    assert jobs["sae/base/layer_6.tsv"].rule == "train_sae"
    assert jobs["sae/base/layer_6/replicate_1.tsv"].rule == "train_sae_replicate"
    assert jobs["compare/layer_6/match_features.tsv"].seconds == 40.0
    assert jobs["sae/base/layer_6.tsv"].max_rss_mb == 812.5
    assert jobs["sae/base/layer_6.tsv"].io_out_mb == 64.0
    assert jobs["sae/base/layer_6.tsv"].cpu_s == 9.5
