"""Domain specialization of SAE features: domain mean minus general mean.

Per layer: every feature's statistics on both corpora side by side, ranked by
specialization. Across layers: the consolidated top features, a per-layer
comparison (average and maximum specialization, top feature, feature count,
rank), the overall top features and a JSON summary.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

STAT_KEYS = ["mean_activation", "max_activation", "frac_active"]


def specialization_table(domain: pd.DataFrame, general: pd.DataFrame) -> pd.DataFrame:
    """Join per-feature stats of both corpora; `specialization` = domain − general mean.

    Sorted by specialization, highest first.
    """
    both = domain[["feature", *STAT_KEYS]].merge(
        general[["feature", *STAT_KEYS]], on="feature", suffixes=("_domain", "_general")
    )
    both["specialization"] = (
        both["mean_activation_domain"] - both["mean_activation_general"]
    )
    return both.sort_values(
        "specialization", ascending=False, kind="stable"
    ).reset_index(drop=True)


def top_features(
    table: pd.DataFrame, top_n: int, min_specialization: float
) -> pd.DataFrame:
    """The `top_n` features specialized above `min_specialization`, ranked from 1."""
    top = table[table["specialization"] > min_specialization].head(top_n).copy()
    top.insert(0, "rank", range(1, len(top) + 1))
    return top


class LayerReports(NamedTuple):
    """Cross-layer outputs of one model."""

    consolidated: pd.DataFrame
    """Every layer's top features, with a `layer` column."""
    layer_comparison: pd.DataFrame
    """One row per layer: avg/max specialization, top feature, count, rank."""
    top_domain: pd.DataFrame
    """The top features across all layers."""
    summary: dict[str, Any]
    """JSON-ready overview."""


def layer_reports(
    per_layer_top: dict[int, pd.DataFrame], top_features_n: int, notes: dict[str, Any]
) -> LayerReports:
    """Combine per-layer top-feature tables (from `top_features`) across layers."""
    consolidated = pd.concat(
        [t.assign(layer=layer) for layer, t in sorted(per_layer_top.items())],
        ignore_index=True,
    )
    consolidated.insert(0, "layer", consolidated.pop("layer"))
    rows = []
    for layer, t in sorted(per_layer_top.items()):
        best = t.iloc[0] if len(t) else None
        rows.append(
            {
                "layer": layer,
                "avg_specialization": float(t["specialization"].mean())
                if len(t)
                else 0.0,
                "max_specialization": float(best["specialization"])
                if best is not None
                else 0.0,
                "top_feature": int(best["feature"]) if best is not None else -1,
                "feature_count": len(t),
            }
        )
    comparison = pd.DataFrame(rows)
    comparison["layer_rank"] = (
        comparison["avg_specialization"].rank(ascending=False, method="min").astype(int)
    )
    top_domain = (
        consolidated.sort_values("specialization", ascending=False, kind="stable")
        .head(top_features_n)
        .drop(columns="rank")
        .reset_index(drop=True)
    )
    top_domain.insert(0, "rank", range(1, len(top_domain) + 1))
    best_layer = comparison.sort_values("layer_rank").iloc[0]
    summary = {
        **notes,
        "layers": [int(v) for v in comparison["layer"]],
        "most_specialized_layer": int(best_layer["layer"]),
        "features_ranked_per_layer": {
            int(r.layer): int(r.feature_count) for r in comparison.itertuples()
        },
        "layer_comparison": comparison.to_dict(orient="records"),
        "top_features": top_domain.head(20)[
            ["rank", "layer", "feature", "specialization"]
        ].to_dict(orient="records"),
    }
    return LayerReports(consolidated, comparison, top_domain, summary)
