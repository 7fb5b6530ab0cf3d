"""Entry points of the crosscoder rules: read inputs, call the library, write."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from saeflow.workflow.config import CompareConfig, CrosscoderConfig
from saeflow.workflow.io import write_csv, write_json, write_parquet

log = logging.getLogger("saeflow")

CLASSES = (
    "shared",
    "finetuned_only",
    "base_only",
    "finetuned_only_artifact",
    "base_only_artifact",
)
"""Final latent classes, one count column each in crosscoder_summary.csv."""


def make_crosscoder_analysis(
    crosscoders: list[str | Path],
    metrics: list[str | Path],
    base_acts: list[str],
    finetuned_acts: list[str],
    saes: dict[str, str | Path],
    sae_metrics: dict[str, str | Path],
    matches: str | Path,
    lost: str | Path,
    cfg: CrosscoderConfig,
    compare: CompareConfig,
    holdout_fraction: float,
    seed: int,
    device: str,
    layer: int,
    outs: dict[str, str],
) -> None:
    """One layer: latents.parquet and crosscoder_comparison.json."""
    from saeflow.crosscoder.analysis import analyse_crosscoder
    from saeflow.crosscoder.data import PairedActivationSource
    from saeflow.sae.model import TopKSAE
    from saeflow.workflow.device import pick_device

    dev = pick_device(device)
    source = PairedActivationSource(base_acts, finetuned_acts, holdout_fraction)
    result = analyse_crosscoder(
        [TopKSAE.load(p, dev) for p in crosscoders],
        source,
        {m: TopKSAE.load(p, dev) for m, p in saes.items()},
        {
            "new": pd.read_parquet(matches, columns=["finetuned_feature", "status"]),
            "lost": pd.read_parquet(lost, columns=["base_feature", "status"]),
        },
        cfg,
        compare,
        seed * 1000 + layer + 7,
    )
    cc_metrics = [_read_json(p) for p in metrics]
    fvu = {
        model: {
            "crosscoder": [m["fvu_per_model"][model] for m in cc_metrics],
            "separate_sae": _read_json(sae_metrics[model])["eval"]["fvu"],
        }
        for model in ("base", "finetuned")
    }
    summary = {
        "layer": layer,
        **result.summary,
        "fvu_per_model": fvu,
        "total_latents": {
            "crosscoder": cc_metrics[0]["n_latents"],
            "separate_saes": sum(
                _read_json(p)["n_latents"] for p in sae_metrics.values()
            ),
        },
        "config": cfg.to_dict(),
    }
    log.info("layer %d crosscoder: %s", layer, summary["counts"])
    write_parquet(result.latents, outs["latents"])
    write_json(summary, outs["summary"])


def make_crosscoder_summary(
    layer_jsons: dict[int, str | Path],
    latents: dict[int, str | Path],
    outs: dict[str, str],
) -> None:
    """Across layers: crosscoder_summary.csv/.json and relative_norms.png."""
    from saeflow.crosscoder.plots import plot_relative_norms

    layers = {layer: _read_json(p) for layer, p in sorted(layer_jsons.items())}
    rows = []
    for layer, s in layers.items():
        agree = s["agreement_with_sae_matching"]
        rows.append(
            {
                "layer": layer,
                **{f"n_{c}": s["counts"].get(c, 0) for c in CLASSES},
                "stable_finetuned_only": s["stable_exclusive"]["finetuned_only"],
                "stable_base_only": s["stable_exclusive"]["base_only"],
                "stable_fraction": s["stable_fraction"],
                "fvu_base_crosscoder": s["fvu_per_model"]["base"]["crosscoder"][0],
                "fvu_base_sae": s["fvu_per_model"]["base"]["separate_sae"],
                "fvu_finetuned_crosscoder": s["fvu_per_model"]["finetuned"][
                    "crosscoder"
                ][0],
                "fvu_finetuned_sae": s["fvu_per_model"]["finetuned"]["separate_sae"],
                "new_sae_features": agree["new"]["n_features"],
                "new_with_finetuned_only_latent": agree["new"]["features_with_latent"],
                "lost_sae_features": agree["lost"]["n_features"],
                "lost_with_base_only_latent": agree["lost"]["features_with_latent"],
            }
        )
    table = pd.DataFrame(rows)
    write_csv(table, outs["table"])
    write_json({"per_layer": layers}, outs["json"])
    plot_relative_norms(
        {layer: pd.read_parquet(p) for layer, p in latents.items()},
        next(iter(layers.values()))["thresholds"],
        outs["figure"],
    )


def _read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
