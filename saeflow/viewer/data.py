"""Build the feature viewer's data: one compact table per model × layer.

The viewer never reads activation caches or SAEs while serving. This module
turns them, once per run, into what the pages ask for:

- ``features.parquet``: every feature with every rankable metric (domain and
  general statistics, specialization, delta vs base, label and label score) and
  its matched partner in the other model when the comparison stage has run;
- ``histograms.npy``  [2, M, bins] int64: counts of non-zero activations on the
  domain (0) and general (1) corpora, bins spanning [0, hist_max] per feature;
  for the crosscoder (a third "model", saeflow.crosscoder.as_sae) each latent's
  decoder norm in each model, its class, and both models' nearest SAE features
  with their activation statistics, side by side;
- ``examples.parquet``: the examples stage's contexts sorted by feature in small
  row groups, so one feature's contexts are read without scanning the file;
- ``manifest.json``: models, layers and which optional stages were built.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.sae.data import iter_rows
from saeflow.sae.model import TopKSAE
from saeflow.viewer.config import MODEL_STATS
from saeflow.workflow.device import pick_device
from saeflow.workflow.io import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

# Metrics the features tab can rank by: column -> human name.
METRICS = {
    "mean_activation_domain": "mean activation (domain)",
    "max_activation_domain": "max activation (domain)",
    "frac_active_domain": "fraction active (domain)",
    "specialization": "specialization (domain − general)",
    "delta_vs_base": "delta vs base (specialization − partner's)",
    "label_score": "label score",
    "relative_norm": "relative decoder norm (fine-tuned share)",
}
CROSSCODER_ONLY = {"relative_norm"}
SCORE_COLUMNS = ("score", "label_score", "detection_score", "fuzzing_score")
LABEL_EXTRA_COLUMNS = (
    "pattern_label",
    "shown_label",
    "shown_label_source",
    *(
        f"{kind}{scorer}_auroc"
        for kind in ("", "pattern_label_")
        for scorer in ("detection", "fuzzing", "embedding")
    ),
)
"""Columns of the labels table carried into the feature table when present."""


@torch.no_grad()
def feature_histograms(
    sae: TopKSAE, batches, hist_max: np.ndarray, bins: int
) -> np.ndarray:
    """Counts [M, bins] of each feature's non-zero activations in [0, hist_max[f]].

    Values at hist_max fall in the last bin; hist_max of 0 puts everything there.
    """
    m = sae.shape.n_latents
    device = sae.W_dec.device
    top = torch.tensor(np.asarray(hist_max, np.float32), device=device)
    counts = torch.zeros(m * bins, dtype=torch.long, device=device)
    for x in batches:
        code = sae.encode(x.to(device))
        active = code.vals > 0
        idx, vals = code.idx[active], code.vals[active]
        b = (vals / top[idx].clamp_min(1e-12) * bins).long().clamp_(0, bins - 1)
        counts.index_add_(0, idx * bins + b, torch.ones_like(idx))
    return counts.view(m, bins).cpu().numpy()


def _partners(model: str, matches: pd.DataFrame, m: int) -> pd.DataFrame:
    """Per feature of `model`: partner id (-1 none), cosine, correlation, status."""
    cols = ["decoder_cosine", "activation_correlation", "matched"]
    out = pd.DataFrame({"feature": np.arange(m), "partner": -1})
    if model == "finetuned":
        mt = matches.rename(
            columns={"finetuned_feature": "feature", "base_feature": "partner_m"}
        )[["feature", "partner_m", *cols, "status"]]
    else:
        # A base feature's partner: the fine-tuned feature matched to it with the
        # highest decoder cosine (several may map to one base feature).
        hit = matches[matches["base_feature"] >= 0].sort_values(
            "decoder_cosine", ascending=False, kind="stable"
        )
        mt = hit.drop_duplicates("base_feature").rename(
            columns={"base_feature": "feature", "finetuned_feature": "partner_m"}
        )[["feature", "partner_m", *cols, "status"]]
    out = out.merge(mt, on="feature", how="left")
    out["partner"] = out["partner_m"].fillna(-1).astype(int)
    out["status"] = out["status"].fillna("unmatched")
    out["matched"] = out["matched"].fillna(False).astype(bool)
    return out.drop(columns="partner_m")


def _labels(labels: pd.DataFrame, model: str, layer: int) -> pd.DataFrame:
    need = {"model", "layer", "feature", "label"}
    if not need <= set(labels.columns):
        raise ValueError(f"labels table lacks column(s) {sorted(need - set(labels))}")
    mine = labels[(labels["model"] == model) & (labels["layer"] == layer)]
    score = next((c for c in SCORE_COLUMNS if c in labels.columns), None)
    out = pd.DataFrame({"feature": mine["feature"].astype(int), "label": mine["label"]})
    out["label_score"] = mine[score].astype(float) if score else np.nan
    # The token-pattern label (no LLM) and which of the two the viewer shows,
    # with each scorer's AUROC of both (tables from before issue #20 lack them).
    for col in LABEL_EXTRA_COLUMNS:
        out[col] = mine[col] if col in mine else None
    return out.drop_duplicates("feature")


def feature_table(
    model: str,
    layer: int,
    spec: pd.DataFrame,
    other_spec: pd.DataFrame | None = None,
    matches: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    patterns: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """All features of one model × layer with every metric, sorted by feature id.

    delta_vs_base (fine-tuned only, needs the comparison): specialization minus
    the matched base feature's; a feature with no match (status "new": its
    nearest base feature, if listed, is not a match) counts the base as 0.
    """
    t = spec.sort_values("feature").reset_index(drop=True)
    m = len(t)
    if matches is not None:
        t = t.merge(_partners(model, matches, m), on="feature", how="left")
    else:
        t["partner"] = -1
        t["decoder_cosine"] = t["activation_correlation"] = np.nan
        t["status"], t["matched"] = None, False
    t["delta_vs_base"] = np.nan
    if model == "finetuned" and matches is not None and other_spec is not None:
        base = other_spec.set_index("feature")["specialization"]
        partner_spec = t["partner"].map(base).where(t["matched"], 0.0)
        t["delta_vs_base"] = t["specialization"] - partner_spec.astype(float)
    if labels is not None:
        t = t.merge(_labels(labels, model, layer), on="feature", how="left")
    else:
        t["label"] = None
        t["label_score"] = np.nan
        for col in LABEL_EXTRA_COLUMNS:
            t[col] = None
    if patterns is not None:
        # Every feature's token pattern, where the labels table has none.
        mine = patterns[(patterns["model"] == model) & (patterns["layer"] == layer)]
        known = mine.set_index("feature")["pattern_label"]
        t["pattern_label"] = t["pattern_label"].fillna(t["feature"].map(known))
    return t


def crosscoder_columns(
    latents: pd.DataFrame, model_specs: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Per crosscoder latent: class, per-model decoder norms, Latent Scaling, and
    per model its nearest SAE feature (`{model}_feature`, `{model}_cosine`) with
    that feature's activation statistics (`{model}_<stat>`, MODEL_STATS)."""
    t = latents.rename(columns={"latent": "feature"}).sort_values("feature")
    keep = ["feature", "relative_norm", "nu_error", "nu_reconstruction", "stable"]
    out = t[keep].assign(status=t["final_class"].astype(str))
    for model, spec in model_specs.items():
        ids = t[f"best_{model}_sae_feature"].to_numpy(dtype=int)
        out[f"norm_{model}"] = t[f"norm_{model}"].to_numpy()
        out[f"{model}_feature"] = ids
        out[f"{model}_cosine"] = t[f"best_{model}_sae_cosine"].to_numpy()
        stats = spec.set_index("feature").reindex(ids)
        for col in MODEL_STATS:
            out[f"{model}_{col}"] = stats[col].to_numpy()
    return out.reset_index(drop=True)


def make_viewer_features(
    model: str,
    layer: int,
    sae_dir: str | Path,
    acts: dict[str, str | Path],
    spec: str | Path,
    other_spec: str | Path | None,
    matches: str | Path | None,
    labels: str | Path | None,
    hist_bins: int,
    batch_size: int,
    device: str,
    out_table: str | Path,
    out_hist: str | Path,
    latents: str | Path | None = None,
    model_specs: dict[str, str | Path] | None = None,
    patterns: str | Path | None = None,
) -> None:
    """Write the feature table and histograms of one model × layer.
    `patterns`: the labels stage's token-pattern label of every feature.

    The crosscoder's table also takes its `latents` table and each model's
    specialization table (`model_specs`: model -> path).
    """
    table = feature_table(
        model,
        layer,
        pd.read_parquet(spec),
        pd.read_parquet(other_spec) if other_spec else None,
        pd.read_parquet(matches) if matches else None,
        pd.read_csv(labels) if labels else None,
        pd.read_parquet(patterns) if patterns else None,
    )
    if latents is not None:
        cc = crosscoder_columns(
            pd.read_parquet(latents),
            {m: pd.read_parquet(p) for m, p in (model_specs or {}).items()},
        )
        table = table.drop(columns="status").merge(cc, on="feature", how="left")
    table["hist_max"] = table[["max_activation_domain", "max_activation_general"]].max(
        axis=1
    )
    sae = TopKSAE.load(sae_dir, pick_device(device))
    hist = np.stack(
        [
            feature_histograms(
                sae,
                iter_rows([acts[corpus]], batch_size),
                table["hist_max"].to_numpy(),
                hist_bins,
            )
            for corpus in ("domain", "general")
        ]
    )  # (2, M, bins)
    write_parquet(table, out_table)
    with atomic_path(out_hist) as tmp, open(tmp, "wb") as f:
        np.save(f, hist)
    log.info("viewer features %s layer %d: %d features", model, layer, len(table))


def make_viewer_examples(
    examples: str | Path, row_group: int, out: str | Path, batch_rows: int = 65_536
) -> None:
    """Sort the examples stage's table by feature into small row groups.

    The examples stage writes its rows in feature order, so this streams: it
    reads `batch_rows` rows at a time and writes every feature below the batch's
    last one, which it carries into the next batch (a feature may straddle two).
    Memory is one batch, not the table (1.2 M rows at M = 24,576). A table out
    of feature order is refused.
    """
    src = pq.ParquetFile(examples)
    missing = sorted(set(EXAMPLE_COLUMNS) - set(src.schema_arrow.names))
    if missing:
        raise ValueError(f"{examples}: missing column(s) {missing}")
    fields = [src.schema_arrow.field(c) for c in EXAMPLE_COLUMNS]
    schema = pa.schema(fields, metadata=src.schema_arrow.metadata)  # pandas dtypes
    order = [("feature", "ascending"), ("kind", "ascending")]  # Arrow's is stable
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        carry = schema.empty_table()
        for batch in src.iter_batches(batch_size=batch_rows, columns=EXAMPLE_COLUMNS):
            table = pa.concat_tables([carry, pa.Table.from_batches([batch], schema)])
            feature = table["feature"].to_numpy()
            if (np.diff(feature) < 0).any():
                raise ValueError(
                    f"{examples}: rows are not in feature order (the examples "
                    "stage writes them so); rerun collect_feature_examples"
                )
            done = int(np.searchsorted(feature, feature[-1]))
            if done:
                writer.write_table(
                    table[:done].sort_by(order), row_group_size=row_group
                )
            carry = table[done:]
        writer.write_table(carry.sort_by(order), row_group_size=row_group)


def run_notes(corpus: str | Path, finetune_metrics: str | Path | None) -> dict:
    """What a reader must know about the run: synthetic text, classifier accuracy."""
    synthetic = pd.read_parquet(corpus, columns=["synthetic"])["synthetic"]
    notes: dict[str, Any] = {"domain_synthetic_fraction": float(synthetic.mean())}
    if finetune_metrics:
        m = json.loads(Path(finetune_metrics).read_text())
        notes["finetune_accuracy"] = m.get("accuracy")
        notes["finetune_majority_baseline"] = m.get("majority_baseline")
    return notes


def make_viewer_manifest(
    models: list[str],
    layers: list[int],
    parts: dict[str, bool],
    corpus: str | Path,
    headlines: str | Path,
    finetune_metrics: str | Path | None,
    hist_bins: int,
    out: str | Path,
    sae_summary: str | Path | None = None,
    comparison: str | Path | None = None,
) -> None:
    """Write manifest.json: what the viewer may serve and what was not built.

    `sae_summary` (results/sae/sae_summary.json) gives each SAE's held-out FVU
    and spliced-in result, shown above its feature table; `comparison`
    (results/compare/comparison_summary.json) the fine-tuning effect beyond the
    seed floor per layer, shown above it too.
    """
    preds = pd.read_parquet(headlines, columns=["prediction"])["prediction"]
    parts = {**parts, "classifier": bool(preds.notna().any())}
    available = {
        name: label
        for name, label in METRICS.items()
        if (name != "delta_vs_base" or parts["compare"])
        and (name != "label_score" or parts["labels"])
        and (name not in CROSSCODER_ONLY or "crosscoder" in models)
    }
    write_json(
        {
            "models": models,
            "layers": [int(v) for v in layers],
            "parts": parts,
            "metrics": available,
            "hist_bins": hist_bins,
            "notes": run_notes(corpus, finetune_metrics),
            "saes": json.loads(Path(sae_summary).read_text()) if sae_summary else {},
            "comparison": json.loads(Path(comparison).read_text())["finetuning_effect"]
            if comparison
            else {},
        },
        out,
    )
