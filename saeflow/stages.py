"""One entry point per workflow rule: read inputs, call the library, write outputs.

Rule scripts unpack Snakemake's objects and call exactly one of these, so every
stage can also be run (and tested) without Snakemake. Each stage imports its heavy
libraries itself: torch and transformers take seconds to import on a small
machine, and the light stages (ranking, summaries) should not pay for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from saeflow.config import (
    ActivationConfig,
    CorpusConfig,
    FeatureConfig,
    FinetuneConfig,
)
from saeflow.io import sha256_file, write_csv, write_json, write_parquet
from saeflow.specialization import layer_reports, specialization_table, top_features

log = logging.getLogger("saeflow")


def make_corpus(cfg: CorpusConfig, seed: int, out: str | Path) -> None:
    """Build one corpus and write it as Parquet; counts go to the log."""
    from saeflow.corpus import build_corpus, write_corpus

    df, report = build_corpus(cfg, seed)
    log.info("corpus %s: %s", out, report._asdict())
    write_corpus(df, out)


def make_finetuned(
    base_ref: str,
    corpus: str | Path,
    cfg: FinetuneConfig,
    seed: int,
    out_dir: str | Path,
    metrics: str | Path,
) -> None:
    """Fine-tune the base model on the domain corpus' labels."""
    from saeflow.finetune import finetune

    df = pd.read_parquet(corpus)
    result = finetune(base_ref, df, cfg, seed, out_dir)
    write_json(
        {
            **result._asdict(),
            "base_model": base_ref,
            "config": cfg.to_dict(),
            "synthetic_fraction": float(df["synthetic"].mean()),
        },
        metrics,
    )


def make_activations(
    model_ref: str,
    corpus: str | Path,
    cfg: ActivationConfig,
    out_paths: dict[int, str],
    report: str | Path,
    device: str,
    model_dtype: str,
) -> None:
    """Cache activations of one model on one corpus for every configured layer."""
    from saeflow.activations import cache_activations
    from saeflow.device import pick_device

    df = pd.read_parquet(corpus, columns=["doc_id", "text"])
    result = cache_activations(
        model_ref,
        df["doc_id"].tolist(),
        df["text"].tolist(),
        cfg,
        out_paths,
        {"corpus": str(corpus), "corpus_hash": sha256_file(corpus)},
        pick_device(device),
        model_dtype,
    )
    log.info("activations: %s", result._asdict())
    write_json(
        {**result._asdict(), "model_ref": model_ref, "corpus": str(corpus)}, report
    )


def make_feature_stats(
    sae_dir: str | Path, acts: str | Path, batch_size: int, device: str, out: str | Path
) -> None:
    """Per-feature statistics of one SAE on one corpus."""
    from saeflow.device import pick_device
    from saeflow.sae import TopKSAE
    from saeflow.stats import feature_stats_of_file

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
    from saeflow.plots import plot_specialization_by_layer

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
