"""Figures of the base vs fine-tuned comparison (PNG, written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from saeflow.workflow.io import atomic_path  # noqa: E402

STATUS_COLORS = {
    "matched": "#718096",
    "changed": "#dd6b20",
    "new": "#2b6cb0",
    "unstable": "#a0aec0",
    "present_in_base": "#38a169",
}


def _save(fig: plt.Figure, path: str | Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_overlap_by_layer(
    table: pd.DataFrame,
    floors: dict[int, dict],
    note: str,
    path: str | Path,
    dpi: int = 120,
) -> None:
    """Left: same-model and cross-model overlap per layer, every replicate pair a
    dot. Middle: the fine-tuning effect with its interval. Right: each SAE's own
    held-out FVU and the base SAE's FVU on fine-tuned activations."""
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    x = table["layer"].to_numpy()
    kinds = [
        ("same_base", "#718096", -0.12, "base seed vs base seed"),
        ("same_finetuned", "#dd6b20", 0.0, "fine-tuned seed vs seed"),
        ("cross", "#2b6cb0", 0.12, "base vs fine-tuned"),
    ]
    for kind, color, shift, label in kinds:
        px, py = [], []
        for layer in x:
            for pair in floors[int(layer)]["pairs"]:
                if pair["kind"] == kind:
                    px.append(layer + shift)
                    py.append(pair["overlap"])
        if px:
            left.scatter(px, py, color=color, s=18, label=label, zorder=3)
    left.set(
        xlabel="layer",
        ylabel="fraction of features matched",
        ylim=(0, 1.05),
        title="Decoder overlap per SAE pair",
        xticks=x,
    )
    left.legend(fontsize=8)
    effect = table["finetuning_effect"].to_numpy(dtype=float)
    if np.isfinite(effect).any():
        err = np.abs(
            [
                effect - table["finetuning_effect_lo"].to_numpy(dtype=float),
                table["finetuning_effect_hi"].to_numpy(dtype=float) - effect,
            ]
        )
        beyond = table["beyond_seed_floor"].fillna(False).to_numpy(dtype=bool)
        for mask, color, label in [
            (beyond, "#c53030", "beyond the seed floor"),
            (~beyond, "#a0aec0", "within the seed floor"),
        ]:
            if mask.any():
                mid.errorbar(
                    x[mask],
                    effect[mask],
                    yerr=err[:, mask],
                    fmt="o",
                    capsize=4,
                    color=color,
                    label=label,
                )
        mid.legend(fontsize=8)
    else:
        mid.text(0.5, 0.5, "no seed floor\n(compare.replicates = 1)", ha="center")
    mid.axhline(0, color="black", lw=0.7)
    mid.set(
        xlabel="layer",
        ylabel="same-model − cross-model overlap",
        title="Fine-tuning effect (95 % interval)",
        xticks=x,
    )
    for col, style, label in [
        ("fvu_base_own", "o-", "base SAE on base"),
        ("fvu_finetuned_own", "s-", "fine-tuned SAE on fine-tuned"),
        ("fvu_transfer", "^--", "base SAE on fine-tuned (transfer)"),
    ]:
        right.plot(x, table[col], style, label=label)
    right.set(xlabel="layer", ylabel="held-out FVU", title="Transfer FVU", xticks=x)
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    fig.suptitle(f"Base vs fine-tuned SAE features, against the seed floor{note}")
    _save(fig, path, dpi)


def plot_latent_scaling(
    by_layer: dict[int, pd.DataFrame],
    thresholds: dict[str, float],
    note: str,
    path: str | Path,
    dpi: int = 120,
) -> None:
    """Histograms of ν (base β / fine-tuned β) per layer and target, matched
    features against the stable unmatched ones (new or present in base)."""
    layers = sorted(by_layer)
    fig, axes = plt.subplots(
        2,
        len(layers),
        figsize=(3.8 * len(layers), 6),
        squeeze=False,
        layout="constrained",
    )
    bins = np.linspace(-0.5, 1.5, 41)
    for col, layer in enumerate(layers):
        df = by_layer[layer]
        groups = [
            ("matched / changed", df["status"].isin(["matched", "changed"]), "#718096"),
            (
                "stable, unmatched",
                df["status"].isin(["new", "present_in_base"]),
                "#2b6cb0",
            ),
        ]
        for row, target in enumerate(("reconstruction", "error")):
            ax = axes[row, col]
            for label, mask, color in groups:
                nu = df.loc[mask, f"nu_{target}"].dropna().clip(-0.5, 1.5)
                ax.hist(
                    nu,
                    bins=bins,
                    alpha=0.6,
                    color=color,
                    density=True,
                    label=f"{label} ({len(nu)})",
                )
            ax.axvline(thresholds[target], color="#c53030", ls="--", lw=1)
            ax.set(
                title=f"layer {layer}, {target} target",
                xlabel="ν = β_base / β_fine-tuned (clipped)",
            )
            ax.legend(fontsize=7)
    fig.suptitle(
        "Latent Scaling: does the base model carry each fine-tuned feature's "
        f"direction? (red: threshold for new){note}"
    )
    _save(fig, path, dpi)


def plot_delta_distributions(
    by_layer: dict[int, pd.DataFrame], note: str, path: str | Path, dpi: int = 120
) -> None:
    """Per layer, over matched features: domain-text activation delta (fine-tuned −
    base partner) and specialization delta."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    layers = sorted(by_layer)
    for ax, col, title in [
        (axes[0], "domain_delta", "Mean activation on domain text"),
        (axes[1], "specialization_delta", "Specialization (domain − general)"),
    ]:
        groups = [
            by_layer[v].loc[by_layer[v]["matched"], col].dropna().to_numpy()
            for v in layers
        ]
        keep = [i for i, g in enumerate(groups) if len(g) > 1]
        if keep:
            ax.violinplot(
                [groups[i] for i in keep],
                positions=[i for i in keep],
                showmedians=True,
            )
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(layers)), [str(v) for v in layers])
        ax.set(xlabel="layer", ylabel="fine-tuned − base partner", title=title)
    fig.suptitle(f"Activation deltas of matched features{note}")
    _save(fig, path, dpi)


def plot_specialization_heatmap(
    by_layer: dict[int, pd.DataFrame],
    n_features: int,
    note: str,
    path: str | Path,
    dpi: int = 120,
) -> None:
    """Layers × rank: specialization of each layer's most specialized fine-tuned
    features (top), and of their base partners (bottom; blank = new)."""
    layers = sorted(by_layer)
    ft = np.full((len(layers), n_features), np.nan)
    base = np.full((len(layers), n_features), np.nan)
    for i, layer in enumerate(layers):
        top = by_layer[layer].nlargest(n_features, "specialization_finetuned")
        ft[i, : len(top)] = top["specialization_finetuned"]
        partner = top["specialization_base"].where(top["matched"])
        base[i, : len(top)] = partner
    vmax = np.nanmax(np.abs(np.concatenate([ft.ravel(), base.ravel(), [1e-9]])))
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(max(6.0, 0.3 * n_features + 2), 2.5 + 0.7 * len(layers)),
        layout="constrained",
    )
    ticks = range(0, n_features, max(1, n_features // 10))
    for ax, data, title in [
        (axes[0], ft, "fine-tuned features (ranked by specialization)"),
        (axes[1], base, "their matched base partners (blank: new feature)"),
    ]:
        im = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_yticks(range(len(layers)), [str(v) for v in layers])
        ax.set_xticks(list(ticks), [str(t + 1) for t in ticks])
        ax.set(xlabel="rank within layer", ylabel="layer", title=title)
        fig.colorbar(im, ax=ax, label="domain − general mean")
    fig.suptitle(f"Specialization by layer{note}")
    _save(fig, path, dpi)


def plot_specialization_scatter(
    by_layer: dict[int, pd.DataFrame], note: str, path: str | Path, dpi: int = 120
) -> None:
    """Per layer: base partner's specialization vs the fine-tuned feature's, for
    matched features, coloured by status."""
    layers = sorted(by_layer)
    ncols = min(4, len(layers))
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.6 * ncols, 3.4 * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax, layer in zip(axes.ravel(), layers, strict=False):
        df = by_layer[layer]
        hit = df[df["matched"]]
        for status in ("matched", "changed"):
            part = hit[hit["status"] == status]
            ax.scatter(
                part["specialization_base"],
                part["specialization_finetuned"],
                s=6,
                alpha=0.6,
                color=STATUS_COLORS[status],
                label=f"{status} ({len(part)})",
            )
        values = hit[["specialization_base", "specialization_finetuned"]].to_numpy()
        lim = float(np.nanmax(np.abs(values))) if values.size else 1.0
        ax.plot([-lim, lim], [-lim, lim], color="black", lw=0.6)
        n_unmatched = int((~df["matched"]).sum())
        ax.set(
            title=f"layer {layer} ({n_unmatched} unmatched not shown)",
            xlabel="base partner specialization",
            ylabel="fine-tuned specialization",
        )
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes.ravel()[len(layers) :]:
        ax.axis("off")
    fig.suptitle(f"Specialization, base vs fine-tuned{note}")
    _save(fig, path, dpi)
