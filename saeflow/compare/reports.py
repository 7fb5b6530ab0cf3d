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
        floor = s["seed_floor"]
        ci = floor["effect_ci"] or [None, None]
        rows.append(
            {
                "layer": layer,
                "finetuning_effect": floor["effect"],
                "finetuning_effect_lo": ci[0],
                "finetuning_effect_hi": ci[1],
                "beyond_seed_floor": floor["beyond_floor"],
                "same_model_overlap_base": floor["same_model_overlap"]["base"],
                "same_model_overlap_finetuned": floor["same_model_overlap"][
                    "finetuned"
                ],
                "cross_model_overlap": floor["cross_model_overlap"],
                "n_new": s["n_new"],
                "n_unstable": s["n_unstable"],
                "n_present_in_base": s["n_present_in_base"],
                "n_matched_other_seed": s["n_matched_other_seed"],
                "n_changed": s["n_changed"],
                "n_changed_expected_by_seed": (s["changed_floor"] or {}).get(
                    "expected_by_seed_noise"
                ),
                "changed_beyond_seed_noise": _changed_beyond(s),
                "n_lost": s["n_lost"],
                "n_lost_unstable": s["n_lost_unstable"],
                "n_lost_present_in_finetuned": s["n_lost_present_in_finetuned"],
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
                "n_unmatched_finetuned": s["n_unmatched_finetuned"],
                "n_unmatched_base": s["n_unmatched_base"],
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
        "finetuning_effect": {
            str(layer): {
                "effect": s["seed_floor"]["effect"],
                "effect_ci": s["seed_floor"]["effect_ci"],
                "beyond_seed_floor": s["seed_floor"]["beyond_floor"],
                "verdict": s["seed_floor"]["verdict"],
                "n_new": s["n_new"],
                "n_unstable": s["n_unstable"],
                "n_changed": s["n_changed"],
                "n_changed_expected_by_seed": (s["changed_floor"] or {}).get(
                    "expected_by_seed_noise"
                ),
                "changed_beyond_seed_noise": _changed_beyond(s),
                "n_lost": s["n_lost"],
            }
            for layer, s in sorted(layers.items())
        },
        "layers_beyond_seed_floor": [
            int(r["layer"]) for _, r in overlap.iterrows() if r["beyond_seed_floor"]
        ],
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


def _changed_beyond(layer: dict[str, Any]) -> bool | None:
    """More changed features than seed noise gives in 97.5 % of draws (None
    without replicates)."""
    floor = layer["changed_floor"]
    return (
        None
        if floor is None
        else layer["n_changed"] > floor["expected_by_seed_noise_hi"]
    )


DEFINITIONS = {
    "seed floor": "compare.replicates SAEs per model and layer from independent "
    "init seeds; every pair matched by decoder cosine with its own null threshold",
    "same-model overlap": "fraction of features of one replicate matched in another "
    "replicate of the same model, averaged over pairs",
    "cross-model overlap": "fraction of fine-tuned features matched in a base "
    "replicate, averaged over all replicate pairs",
    "fine-tuning effect": "mean same-model overlap (both models) minus cross-model "
    "overlap; interval: t interval over between-seed and feature variance; beyond "
    "the seed floor when its lower end is above 0",
    "matched": "decoder cosine of the assigned base (replicate 0) partner above "
    "the null threshold",
    "null": "the same assignment with the fine-tuned SAE replaced by random "
    "features with its mean and covariance of decoder/encoder rows (reading the "
    "fine-tuned activations); a shared-init displacement null only when both SAEs "
    "came from one init seed; threshold = that null's null_quantile",
    "overlap": "fraction of fine-tuned features matched to base replicate 0; "
    "interval: features bootstrapped (no seed variation: see fine-tuning effect)",
    "new": "fine-tuned feature matched in every other fine-tuned replicate "
    "(stable), in no base replicate, and absent from the base model by Latent "
    "Scaling (nu_error < nu_error_max and nu_reconstruction < "
    "nu_reconstruction_max)",
    "unstable": "unmatched in every base replicate, but not matched in every other "
    "replicate of its own model: seed noise, not counted as new or lost",
    "matched_other_seed": "no partner in replicate 0 of the other model, but one "
    "in another of its replicates",
    "present_in_base": "stable and unmatched, but Latent Scaling finds its "
    "direction in the base model where it fires (mirror: present_in_finetuned)",
    "silent": "never fires on the compared tokens",
    "changed": "matched, mean activation on domain text moved by at least "
    "changed_fold with a document-bootstrap interval excluding 0, specialization "
    "moved with an interval excluding 0, and domain share (domain / (domain + "
    "general) mean) moved more than the null_quantile of its move between two "
    "seeds of one model; n_changed_expected_by_seed: how many matched features "
    "pass that last test by seed noise alone",
    "lost": "base feature stable across base replicates, matched in no fine-tuned "
    "replicate, absent from the fine-tuned model by Latent Scaling",
    "latent scaling": "beta = closed-form least-squares scale of a feature's "
    "decoder direction times its activation fitted to a target on the same tokens "
    "(each model's SAE reconstruction without bias, or its reconstruction error "
    "plus the feature's own term for its own model); nu = beta_other / beta_own",
    "n_unmatched_finetuned, n_unmatched_base": "raw counts without partner in "
    "the other model's replicate 0 (what earlier versions called new and lost)",
    "specialization": "mean activation on domain text minus on general text",
    "transfer FVU": "base SAE's held-out FVU on the fine-tuned model's activations",
    "base SAE in fine-tuned": "the base SAE's reconstruction spliced into the "
    "fine-tuned classifier at its layer: fraction of loss recovered, (L_zero - "
    "L_sae) / (L_zero - L_clean), and accuracy (splice stage)",
}
