"""Entry points of the features rules: per-feature statistics, per-layer ranking by
specialization, cross-layer reports.

Rule scripts unpack Snakemake's objects and call exactly one of these, so every
stage can also be run (and tested) without Snakemake. Each stage imports its heavy
libraries itself: torch and transformers take seconds to import on a small machine,
and the light stages (ranking, summaries) should not pay for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from saeflow.features.specialization import (
    layer_reports,
    specialization_table,
    top_features,
)
from saeflow.workflow.config import FeatureConfig
from saeflow.workflow.io import write_csv, write_json, write_parquet

log = logging.getLogger("saeflow")


def make_feature_stats(
    sae_dir: str | Path, acts: str | Path, batch_size: int, device: str, out: str | Path
) -> None:
    """Per-feature statistics of one SAE on one corpus."""
    from saeflow.features.stats import feature_stats_of_file
    from saeflow.sae.model import TopKSAE
    from saeflow.workflow.device import pick_device

    sae = TopKSAE.load(sae_dir, pick_device(device))
    write_parquet(feature_stats_of_file(sae, acts, batch_size), out)


def make_layer_ranking(
    domain: str | Path,
    general: str | Path,
    cfg: FeatureConfig,
    table_out: str | Path,
    csv_out: str | Path,
    json_out: str | Path,
) -> None:
    """Rank one layer's features by specialization (domain − general mean)."""
    table = specialization_table(pd.read_parquet(domain), pd.read_parquet(general))
    write_parquet(table, table_out)
    top = top_features(table, cfg.top_n, cfg.min_specialization)
    write_csv(top, csv_out)
    write_json(top.to_dict(orient="records"), json_out)


def make_model_summary(
    layer_csvs: dict[int, str],
    corpus: str | Path,
    cfg: FeatureConfig,
    model: str,
    outs: dict[str, str],
) -> None:
    """Cross-layer reports and figure for one model."""
    from saeflow.features.plots import plot_specialization_by_layer

    per_layer = {layer: pd.read_csv(path) for layer, path in layer_csvs.items()}
    synthetic = float(
        pd.read_parquet(corpus, columns=["synthetic"])["synthetic"].mean()
    )
    notes = {
        "model": model,
        "domain_corpus_synthetic_fraction": synthetic,
        "note": (
            "domain corpus is SYNTHETIC (generated headlines)"
            if synthetic > 0
            else "domain corpus is real text"
        ),
        "top_n": cfg.top_n,
        "min_specialization": cfg.min_specialization,
    }
    reports = layer_reports(per_layer, cfg.top_features_n, notes)
    write_csv(reports.consolidated, outs["consolidated"])
    write_csv(reports.layer_comparison, outs["layer_comparison"])
    write_csv(reports.top_domain, outs["top_domain"])
    write_json(reports.summary, outs["summary"])
    label = " (synthetic domain corpus)" if synthetic > 0 else ""
    plot_specialization_by_layer(
        reports.layer_comparison,
        reports.consolidated,
        f"{model}: domain specialization by layer{label}",
        outs["figure"],
    )
