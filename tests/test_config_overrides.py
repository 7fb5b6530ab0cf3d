"""Command-line overrides of nested keys (`--config "sae={k: 16}"`): typed as YAML
would type them, merged key by key into the config file, checked by the schema,
and rerunning only what depends on the changed key."""

import pytest
from conftest import planned_jobs, snakemake
from snakemake.cli import parse_config

from saeflow.workflow.config import apply_cli_overrides, typed_overrides, yaml_scalar


def test_cli_values_are_typed_as_yaml():
    raw = parse_config(
        [
            "sae={k: 16, lr: 1e-4, variants: [{name: wide, expansion: 4}]}",
            "compare={null_quantile: 0.95, max_tokens: null, plots: {dpi: 70}}",
            "preset=[2,6]",
            "seed=1",
            "tensorboard=true",
            "label=fast",
        ]
    )
    assert raw["sae"]["k"] == "16"  # what Snakemake's parser leaves
    assert typed_overrides(raw) == {
        "sae": {"k": 16, "lr": 1e-4, "variants": [{"name": "wide", "expansion": 4}]},
        "compare": {"null_quantile": 0.95, "max_tokens": None, "plots": {"dpi": 70}},
        "preset": [2, 6],
        "seed": 1,
        "tensorboard": True,
        "label": "fast",
    }
    # Text that is no YAML scalar stays what the user wrote.
    for text in ("2010-01-04", "a: b", "models/tiny_bert", "4,6"):
        assert yaml_scalar(text) == text


def test_cli_overrides_change_only_the_keys_given():
    config = {"sae": {"k": 4, "expansion": 2}, "compare": {"plots": {"dpi": 60}}}
    overrides = parse_config(["sae={k: 16}", "compare={plots: {heatmap_features: 5}}"])
    # Snakemake merges key by key before the workflow sees the config ...
    from snakemake.utils import update_config

    update_config(config, overrides)
    # ... and the workflow types what came from the command line.
    apply_cli_overrides(config, overrides)
    assert config == {
        "sae": {"k": 16, "expansion": 2},
        "compare": {"plots": {"dpi": 60, "heatmap_features": 5}},
    }


@pytest.mark.slow
def test_nested_k_override_reruns_only_sae_and_downstream(tiny_run):
    result = snakemake(tiny_run, "-n", "--config", "sae={k: 16}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["train_sae"] == 4 and jobs["compute_feature_stats"] == 8
    assert jobs["match_features"] == 2
    assert {"build_corpus", "finetune_model", "cache_activations"}.isdisjoint(jobs)


@pytest.mark.slow
def test_nested_compare_override_reruns_only_the_comparison(tiny_run):
    result = snakemake(tiny_run, "-n", "--config", "compare={null_quantile: 0.95}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["match_features"] == 2
    assert {"cache_activations", "train_sae", "compute_feature_stats"}.isdisjoint(jobs)


@pytest.mark.slow
def test_nested_override_keeps_the_rest_of_the_block(tiny_run):
    # tiny.yaml's own values: nothing to do, so neither block lost its other keys.
    result = snakemake(
        tiny_run, "-n", "--config", "sae={k: 4}", "compare={plots: {dpi: 60}}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {}


def test_nested_override_errors_name_the_key(tmp_path):
    result = snakemake(tmp_path, "-n", "--config", "sae={k: three}")
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in out
    assert "invalid config at key 'sae.k'" in out and "three" in out
