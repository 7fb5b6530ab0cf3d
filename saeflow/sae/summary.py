"""Every SAE of a run in one table: held-out FVU beside its spliced-in result.

`train_sae` writes each SAE's `metrics.json` (reconstruction on held-out
activations); `evaluate_spliced` writes `spliced.json` beside it (the model run
with that reconstruction in place of its layer). FVU alone misleads (a low FVU
can still lose what the model reads downstream), so this module joins the two
into `results/sae/sae_summary.{csv,json}` and a figure, which the README table,
the report and the viewer read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from saeflow.workflow.io import write_csv, write_json
from saeflow.workflow.plots import plt, save_figure

SPLICE_METRIC = {
    "classifier": "fraction of loss recovered",
    "encoder": "fraction of embedding cosine recovered",
    "causal_lm": "fraction of next-token loss recovered",
    "masked_lm": "fraction of masked-token loss recovered",
}
"""What `spliced_recovered` measures, per kind of model (see
saeflow.splice.evaluate)."""


def spliced_columns(spliced: dict[str, Any]) -> dict[str, Any]:
    """The flat columns of one `spliced.json`: recovered fractions and raw figures."""
    cond = spliced["conditions"]
    row: dict[str, Any] = {
        "splice_kind": spliced["kind"],
        "splice_metric": SPLICE_METRIC[spliced["kind"]],
        "spliced_recovered": cond["sae"]["fraction_recovered"],
        "mean_ablation_recovered": cond["mean"]["fraction_recovered"],
    }
    for metric in ("loss", "accuracy", "cosine_to_clean", "kl_from_clean"):
        if metric in cond["clean"]:
            # Cosine and KL of clean to itself are 1 and 0 by definition.
            names = [n for n in cond if metric in ("loss", "accuracy") or n != "clean"]
            row |= {f"{metric}_{name}": cond[name][metric] for name in names}
    row["splice_texts"] = spliced.get("texts")
    return row


def sae_summary(
    metrics: dict[tuple[str, int], str | Path],
    spliced: dict[tuple[str, int], str | Path],
    base_in_finetuned: dict[int, str | Path],
) -> pd.DataFrame:
    """One row per (model, layer): training metrics, then spliced ones if given.

    `base_in_finetuned` (the base SAE spliced into the fine-tuned model, per
    layer) adds `in_finetuned_recovered` to the base rows.
    """
    rows = []
    for (model, layer), path in sorted(metrics.items()):
        m = json.loads(Path(path).read_text())
        row: dict[str, Any] = {
            "model": model,
            "layer": layer,
            "n_latents": m["n_latents"],
            "k": m["config"]["k"],
            "fvu": m["eval"]["fvu"],
            "l0": m["eval"]["l0"],
            "dead_fraction": m["dead_fraction"],
            "never_fired_fraction": m["eval"]["never_fired_fraction"],
            "source": m.get("imported_from", "trained"),
        }
        if (model, layer) in spliced:
            s = json.loads(Path(spliced[model, layer]).read_text())
            row |= spliced_columns(s)
        if model == "base" and layer in base_in_finetuned:
            s = json.loads(Path(base_in_finetuned[layer]).read_text())
            row["in_finetuned_recovered"] = s["conditions"]["sae"]["fraction_recovered"]
        rows.append(row)
    return pd.DataFrame(rows)


def plot_sae_summary(table: pd.DataFrame, out: str | Path) -> None:
    """FVU and spliced-in recovered fraction by layer, one line per model."""
    has_splice = "spliced_recovered" in table
    fig, axes = plt.subplots(
        1, 2 if has_splice else 1, figsize=(12, 3.4), squeeze=False
    )
    for model, part in table.groupby("model"):
        axes[0, 0].plot(part["layer"], part["fvu"], marker="o", label=model)
        if has_splice:
            metric = part["splice_metric"].iloc[0]
            axes[0, 1].plot(
                part["layer"],
                part["spliced_recovered"],
                marker="o",
                label=f"{model}: {metric}",
            )
            axes[0, 1].plot(
                part["layer"],
                part["mean_ablation_recovered"],
                marker="x",
                linestyle=":",
                color=axes[0, 1].lines[-1].get_color(),
                label=f"{model}: mean ablation",
            )
    if "in_finetuned_recovered" in table:
        base = table[table["model"] == "base"]
        axes[0, 1].plot(
            base["layer"],
            base["in_finetuned_recovered"],
            marker="s",
            linestyle="--",
            label="base SAE in finetuned: fraction of loss recovered",
        )
    axes[0, 0].set(xlabel="layer", ylabel="held-out FVU (lower is better)")
    axes[0, 0].set_title("reconstruction")
    if has_splice:
        ax = axes[0, 1]
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set(xlabel="layer", ylabel="fraction recovered (1 = clean, 0 = zeroed)")
        ax.set_title("spliced into its model")
        # Outside the axes: the mean-ablation lines run low, where it would sit.
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0, 0].legend(fontsize=7)
    for ax in axes[0]:
        ax.set_xticks(sorted(table["layer"].unique()))
    fig.tight_layout()
    save_figure(fig, out)


def make_sae_summary(
    metrics: dict[tuple[str, int], str | Path],
    spliced: dict[tuple[str, int], str | Path],
    base_in_finetuned: dict[int, str | Path],
    outputs: dict[str, str | Path],
) -> pd.DataFrame:
    """Write the summary as CSV (`table`), JSON (`json`) and a figure (`figure`)."""
    table = sae_summary(metrics, spliced, base_in_finetuned)
    write_csv(table, outputs["table"])
    records = json.loads(table.to_json(orient="records"))
    write_json(
        {f"{r['model']}/layer_{r['layer']}": r for r in records}, outputs["json"]
    )
    plot_sae_summary(table, outputs["figure"])
    return table
