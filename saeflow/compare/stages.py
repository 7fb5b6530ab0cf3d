"""Entry points of the comparison rules: read inputs, call the library, write.

Each stage imports its heavy libraries itself, so the summary and figure rules
start without torch (see saeflow/__init__.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from saeflow.compare.reports import comparison_reports
from saeflow.workflow.config import CompareConfig, ComparePlotConfig
from saeflow.workflow.io import write_csv, write_json, write_parquet

log = logging.getLogger("saeflow")


def make_layer_comparison(
    saes_base: list[str | Path],
    saes_finetuned: list[str | Path],
    base_acts: dict[str, str],
    finetuned_acts: dict[str, str],
    cfg: CompareConfig,
    seed: int,
    init_seeds: tuple[int, int],
    device: str,
    layer: int,
    outs: dict[str, str],
) -> None:
    """Match one layer's features (matches, lost, top table, layer summary).

    saes_base, saes_finetuned: each model's replicates, replicate 0 first.
    init_seeds: the init seeds of the two replicates 0.
    """
    from saeflow.compare.layer import choose_null, compare_layer
    from saeflow.compare.seed_floor import latent_means, seed_floor
    from saeflow.sae.model import TopKSAE
    from saeflow.workflow.device import pick_device

    dev = pick_device(device)
    base = [TopKSAE.load(p, dev) for p in saes_base]
    finetuned = [TopKSAE.load(p, dev) for p in saes_finetuned]
    # The null stands in for the fine-tuned SAE; seeded per layer.
    null_seed = seed * 1000 + layer + 1
    null, null_info = choose_null(base[0], finetuned[0], init_seeds, null_seed)
    log.info("layer %d null: %s", layer, null_info)
    acts = {"base": base_acts, "finetuned": finetuned_acts}
    means = {
        (model, r): latent_means(sae, acts[model], cfg.batch_size, cfg.max_tokens)
        for model, reps in (("base", base), ("finetuned", finetuned))
        for r, sae in enumerate(reps)
    }
    floor = seed_floor(base, finetuned, cfg, null_seed, null, means)
    log.info("layer %d seed floor: %s", layer, floor.summary["verdict"])
    result = compare_layer(
        base[0],
        finetuned[0],
        null,
        base_acts,
        finetuned_acts,
        cfg,
        seed,
        dev,
        floor,
    )
    write_parquet(result.matches, outs["matches"])
    write_parquet(result.lost, outs["lost"])
    write_csv(result.top, outs["top"])
    summary = {
        "layer": layer,
        **result.summary,
        "null": null_info,
        "config": cfg.to_dict(),
    }
    log.info(
        "layer %d: overlap %.3f (decoder), %.3f (activation); %d new, %d unstable, "
        "%d lost",
        layer,
        summary["decoder"]["overlap"],
        summary["activation"]["overlap"],
        summary["n_new"],
        summary["n_unstable"],
        summary["n_lost"],
    )
    write_json(summary, outs["summary"])


def make_transfer(
    sae_base: str | Path,
    sae_finetuned: str | Path,
    base_acts: list[str],
    finetuned_acts: list[str],
    holdout_fraction: float,
    batch_size: int,
    device: str,
    layer: int,
    out: str | Path,
) -> None:
    """Held-out FVU of both SAEs on both models' activations of one layer."""
    from saeflow.compare.reports import transfer_fvu
    from saeflow.sae.model import TopKSAE
    from saeflow.workflow.device import pick_device

    dev = pick_device(device)
    result = transfer_fvu(
        TopKSAE.load(sae_base, dev),
        TopKSAE.load(sae_finetuned, dev),
        base_acts,
        finetuned_acts,
        holdout_fraction,
        batch_size,
    )
    write_json({"layer": layer, "holdout_fraction": holdout_fraction, **result}, out)


def make_comparison_summary(
    layer_jsons: dict[int, str],
    transfers: dict[int, str],
    tops: dict[int, str],
    corpus: str | Path,
    top_n: int,
    preset: Any,
    outs: dict[str, str],
    spliced: dict[int, str] | None = None,
) -> None:
    """Cross-layer overlap table, top compared features, comparison_summary.json.

    `spliced`: the base SAE spliced into the fine-tuned model, per layer, if run.
    """
    synthetic = float(
        pd.read_parquet(corpus, columns=["synthetic"])["synthetic"].mean()
    )
    notes = {
        "domain_corpus_synthetic_fraction": synthetic,
        "note": (
            "domain corpus is SYNTHETIC (generated headlines)"
            if synthetic > 0
            else "domain corpus is real text"
        ),
        "preset": preset,
    }
    reports = comparison_reports(
        {layer: _read_json(p) for layer, p in layer_jsons.items()},
        {layer: _read_json(p) for layer, p in transfers.items()},
        {layer: pd.read_csv(p) for layer, p in tops.items()},
        top_n,
        notes,
        {layer: _read_json(p) for layer, p in spliced.items()} if spliced else None,
    )
    write_csv(reports.overlap, outs["overlap"])
    write_csv(reports.top, outs["top"])
    write_json(reports.summary, outs["summary"])


def make_comparison_figures(
    overlap: str | Path,
    matches: dict[int, str],
    summary: str | Path,
    cfg: ComparePlotConfig,
    outs: dict[str, str],
) -> None:
    """The comparison figures."""
    from saeflow.compare.plots import (
        plot_delta_distributions,
        plot_latent_scaling,
        plot_overlap_by_layer,
        plot_specialization_heatmap,
        plot_specialization_scatter,
    )

    table = pd.read_csv(overlap)
    by_layer = {layer: pd.read_parquet(p) for layer, p in matches.items()}
    details = _read_json(summary)
    synthetic = details["domain_corpus_synthetic_fraction"] > 0
    summary_note = " (synthetic domain corpus)" if synthetic else ""
    layer_details = details["layer_details"]
    floors = {int(k): v["seed_floor"] for k, v in layer_details.items()}
    plot_overlap_by_layer(table, floors, summary_note, outs["overlap"], cfg.dpi)
    scaling = next(iter(layer_details.values()))["latent_scaling"]
    thresholds = {
        "reconstruction": scaling["nu_reconstruction_max"],
        "error": scaling["nu_error_max"],
    }
    plot_latent_scaling(
        by_layer, thresholds, summary_note, outs["latent_scaling"], cfg.dpi
    )
    plot_delta_distributions(by_layer, summary_note, outs["deltas"], cfg.dpi)
    plot_specialization_heatmap(
        by_layer, cfg.heatmap_features, summary_note, outs["heatmap"], cfg.dpi
    )
    plot_specialization_scatter(by_layer, summary_note, outs["scatter"], cfg.dpi)


def _read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
