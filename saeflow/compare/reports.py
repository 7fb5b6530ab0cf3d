"""How far the representation moved, and the comparison across layers.

`transfer_fvu`: the base SAE's held-out FVU on the fine-tuned model's activations,
next to each SAE's own (a direct measure of representation drift).
`comparison_reports`: per-layer comparisons and transfer FVUs combined into the
overlap table, the top compared features across layers and the summary JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

if TYPE_CHECKING:
    from saeflow.sae.model import TopKSAE


def transfer_fvu(
    sae_base: TopKSAE,
    sae_finetuned: TopKSAE,
    base_acts: Sequence[str | Path],
    finetuned_acts: Sequence[str | Path],
    holdout_fraction: float,
    batch_size: int,
) -> dict[str, Any]:
    """Held-out FVU of each SAE on each model's activations (same rows as training
    evaluation, so an SAE on its own model's activations gives its metrics.json FVU)."""
    # torch-side imports stay here: the summary rule uses this module without torch.
    from saeflow.sae.data import ActivationSource
    from saeflow.sae.trainer import evaluate

    sources = {
        "base": ActivationSource(base_acts, holdout_fraction),
        "finetuned": ActivationSource(finetuned_acts, holdout_fraction),
    }
    saes = {"base": sae_base, "finetuned": sae_finetuned}
    out: dict[str, Any] = {}
    for sae_name, sae in saes.items():
        for acts_name, source in sources.items():
            result = evaluate(sae, source, batch_size)
            out[f"{sae_name}_sae_on_{acts_name}"] = result._asdict()
    own_b = out["base_sae_on_base"]["fvu"]
    own_f = out["finetuned_sae_on_finetuned"]["fvu"]
    out["fvu_base_own"], out["fvu_finetuned_own"] = own_b, own_f
    out["fvu_transfer"] = out["base_sae_on_finetuned"]["fvu"]
    out["fvu_reverse_transfer"] = out["finetuned_sae_on_base"]["fvu"]
    out["transfer_gap"] = out["fvu_transfer"] - own_b
    return out


class ComparisonReports(NamedTuple):
    """Cross-layer outputs of the comparison."""

    overlap: pd.DataFrame
    """One row per layer: overlaps with intervals, thresholds, counts, FVUs."""
    top: pd.DataFrame
    """The `top_n` compared fine-tuned features across layers."""
    summary: dict[str, Any]
    """JSON-ready overview (comparison_summary.json)."""


def comparison_reports(
    layers: dict[int, dict[str, Any]],
    transfers: dict[int, dict[str, Any]],
    tops: dict[int, pd.DataFrame],
    top_n: int,
    notes: dict[str, Any],
    spliced: dict[int, dict[str, Any]] | None = None,
) -> ComparisonReports:
    """Combine per-layer comparison summaries, transfer FVUs and top tables.

    `spliced` (the splice stage's base SAE spliced into the fine-tuned model, per
    layer) adds its fraction of loss recovered and accuracy, when given.
    """
    rows = []
    for layer, s in sorted(layers.items()):
        t = transfers[layer]
        downstream = {}
        if spliced is not None:
            sae = spliced[layer]["conditions"]["sae"]
            downstream = {
                "base_sae_in_finetuned_recovered": sae["fraction_recovered"],
                "base_sae_in_finetuned_accuracy": sae["accuracy"],
            }
        rows.append(
            {
                "layer": layer,
                "decoder_overlap": s["decoder"]["overlap"],
                "decoder_overlap_lo": s["decoder"]["overlap_ci"][0],
                "decoder_overlap_hi": s["decoder"]["overlap_ci"][1],
                "decoder_threshold": s["decoder"]["threshold"],
                "activation_overlap": s["activation"]["overlap"],
                "activation_overlap_lo": s["activation"]["overlap_ci"][0],
                "activation_overlap_hi": s["activation"]["overlap_ci"][1],
                "activation_threshold": s["activation"]["threshold"],
                "methods_agree": s["methods_agree"],
                "n_matched": s["n_matched"],
                "n_changed": s["n_changed"],
                "n_new": s["n_new"],
                "n_lost": s["n_lost"],
                "fvu_base_own": t["fvu_base_own"],
                "fvu_finetuned_own": t["fvu_finetuned_own"],
                "fvu_transfer": t["fvu_transfer"],
                "fvu_reverse_transfer": t["fvu_reverse_transfer"],
                **downstream,
                "n_tokens": s["n_tokens"],
            }
        )
    overlap = pd.DataFrame(rows)
    top = pd.concat(
        [
            t.drop(columns="rank").assign(layer=layer)
            for layer, t in sorted(tops.items())
        ],
        ignore_index=True,
    )
    top.insert(0, "layer", top.pop("layer"))
    top = top.sort_values("specialization_finetuned", ascending=False, kind="stable")
    top = top.head(top_n).reset_index(drop=True)
    top.insert(0, "rank", range(1, len(top) + 1))
    first, last = overlap.iloc[0], overlap.iloc[-1]
    summary = {
        **notes,
        "layers": [int(v) for v in overlap["layer"]],
        "overlap_first_layer": float(first["decoder_overlap"]),
        "overlap_last_layer": float(last["decoder_overlap"]),
        "least_overlap_layer": int(
            overlap.loc[overlap["decoder_overlap"].idxmin(), "layer"]
        ),
        "largest_transfer_gap_layer": int(
            overlap.loc[
                (overlap["fvu_transfer"] - overlap["fvu_base_own"]).idxmax(), "layer"
            ]
        ),
        "per_layer": overlap.to_dict(orient="records"),
        "layer_details": {str(k): v for k, v in sorted(layers.items())},
        "transfer": {str(k): v for k, v in sorted(transfers.items())},
        "spliced_base_into_finetuned": {
            str(k): v for k, v in sorted((spliced or {}).items())
        },
        "top_features": top.head(20)[
            [
                "rank",
                "layer",
                "finetuned_feature",
                "base_feature",
                "status",
                "decoder_cosine",
                "specialization_finetuned",
                "specialization_base",
            ]
        ].to_dict(orient="records"),
        "definitions": DEFINITIONS,
    }
    return ComparisonReports(overlap, top, summary)


DEFINITIONS = {
    "matched": "decoder cosine of the assigned base partner above the null threshold",
    "null": "the same assignment with the fine-tuned SAE replaced by random "
    "features with its mean and covariance of decoder/encoder rows (reading the "
    "fine-tuned activations); when both SAEs still carry their common training "
    "init, the init moved by random displacements with the fine-tuned SAE's "
    "displacement statistics; threshold = that null's null_quantile",
    "overlap": "fraction of fine-tuned features matched; interval: features "
    "bootstrapped",
    "new": "fine-tuned feature without a matched base partner",
    "changed": "matched, but mean activation on domain text moved by at least "
    "changed_fold and its document-bootstrap interval excludes 0",
    "lost": "base feature that is no fine-tuned feature's matched partner",
    "specialization": "mean activation on domain text minus on general text",
    "transfer FVU": "base SAE's held-out FVU on the fine-tuned model's activations",
    "base SAE in fine-tuned": "the base SAE's reconstruction spliced into the "
    "fine-tuned classifier at its layer: fraction of loss recovered, (L_zero - "
    "L_sae) / (L_zero - L_clean), and accuracy (splice stage)",
}
