"""Tests for domain-specialization tables and cross-layer reports."""

import json

import pandas as pd
import pytest

from saeflow.features.specialization import (
    layer_reports,
    specialization_table,
    top_features,
)
from saeflow.workflow.io import write_json

DOMAIN_MEAN = [0.5, 0.1, 0.9, 0.0, 0.3, 0.2]
GENERAL_MEAN = [0.1, 0.4, 0.2, 0.0, 0.3, 0.0]
# specialization = [0.4, -0.3, 0.7, 0.0, 0.0, 0.2]


def stats(means, scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": range(len(means)),
            "mean_activation": [scale * m for m in means],
            "max_activation": [2 * scale * m for m in means],
            "frac_active": [0.5] * len(means),
            "mean_when_active": [2 * scale * m for m in means],
            "n_tokens": 100,
        }
    )


def table(scale: float = 1.0) -> pd.DataFrame:
    return specialization_table(stats(DOMAIN_MEAN, scale), stats(GENERAL_MEAN, scale))


def test_specialization_is_domain_minus_general_sorted_descending():
    t = table()

    assert t["feature"].tolist() == [2, 0, 5, 3, 4, 1]
    assert t["specialization"].tolist() == pytest.approx(
        [0.7, 0.4, 0.2, 0.0, 0.0, -0.3]
    )
    assert t["mean_activation_domain"].tolist() == pytest.approx(
        [0.9, 0.5, 0.2, 0.0, 0.3, 0.1]
    )
    assert {"max_activation_general", "frac_active_domain"} <= set(t.columns)


@pytest.mark.parametrize(
    ("top_n", "min_spec", "features"),
    [
        (2, 0.0, [2, 0]),
        (10, 0.0, [2, 0, 5]),
        (10, 0.3, [2, 0]),
        (10, -1.0, [2, 0, 5, 3, 4, 1]),
    ],
)
def test_top_features_respects_top_n_and_threshold(top_n, min_spec, features):
    top = top_features(table(), top_n, min_spec)

    assert top["feature"].tolist() == features
    assert top["rank"].tolist() == list(range(1, len(features) + 1))
    assert top.columns[0] == "rank"


@pytest.fixture
def reports():
    per_layer = {
        2: top_features(table(scale=3.0), 3, 0.0),  # specialization 2.1, 1.2, 0.6
        1: top_features(table(), 3, 0.0),  # 0.7, 0.4, 0.2
        3: top_features(table(), 3, 5.0),  # nothing passes
    }
    return layer_reports(per_layer, top_features_n=4, notes={"model": "tiny"})


def test_layer_comparison(reports):
    cmp = reports.layer_comparison

    assert list(cmp.columns) == [
        "layer",
        "avg_specialization",
        "max_specialization",
        "top_feature",
        "feature_count",
        "layer_rank",
    ]
    assert cmp["layer"].tolist() == [1, 2, 3]
    assert cmp["avg_specialization"].tolist() == pytest.approx([1.3 / 3, 3.9 / 3, 0.0])
    assert cmp["max_specialization"].tolist() == pytest.approx([0.7, 2.1, 0.0])
    assert cmp["top_feature"].tolist() == [2, 2, -1]
    assert cmp["feature_count"].tolist() == [3, 3, 0]
    assert cmp["layer_rank"].tolist() == [2, 1, 3]


def test_consolidated_and_top_domain(reports):
    assert reports.consolidated.columns[0] == "layer"
    assert reports.consolidated["layer"].tolist() == [1, 1, 1, 2, 2, 2]

    top = reports.top_domain

    assert top["rank"].tolist() == [1, 2, 3, 4]
    assert list(zip(top["layer"], top["feature"], strict=True)) == [
        (2, 2),
        (2, 0),
        (1, 2),
        (2, 5),
    ]
    assert top["specialization"].is_monotonic_decreasing


def test_summary(reports, tmp_path):
    summary = reports.summary

    assert set(summary) == {
        "model",
        "layers",
        "most_specialized_layer",
        "features_ranked_per_layer",
        "layer_comparison",
        "top_features",
    }
    assert summary["layers"] == [1, 2, 3]
    assert summary["most_specialized_layer"] == 2
    assert summary["features_ranked_per_layer"] == {1: 3, 2: 3, 3: 0}
    assert [r["feature"] for r in summary["top_features"]] == [2, 0, 2, 5]
    write_json(summary, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["most_specialized_layer"] == 2
