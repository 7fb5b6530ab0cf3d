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

STATUS_COLORS = {"matched": "#718096", "changed": "#dd6b20", "new": "#2b6cb0"}


def _save(fig: plt.Figure, path: str | Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def plot_overlap_by_layer(
    table: pd.DataFrame, note: str, path: str | Path, dpi: int = 120
) -> None:
    """Left: overlap per layer, both methods, bootstrap intervals. Right: each
    SAE's own held-out FVU and the base SAE's FVU on fine-tuned activations."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    x = table["layer"].to_numpy()
    for name, color, label in [
        ("decoder", "#2b6cb0", "decoder cosine"),
        ("activation", "#dd6b20", "activation correlation"),
    ]:
        y = table[f"{name}_overlap"].to_numpy()
        err = [y - table[f"{name}_overlap_lo"], table[f"{name}_overlap_hi"] - y]
        left.errorbar(
            x, y, yerr=np.abs(err), marker="o", capsize=3, color=color, label=label
        )
    left.set(
        xlabel="layer",
        ylabel="fraction of fine-tuned features matched",
        ylim=(0, 1.05),
        title="Feature overlap, base vs fine-tuned",
        xticks=x,
    )
    left.legend()
    for col, style, label in [
        ("fvu_base_own", "o-", "base SAE on base"),
        ("fvu_finetuned_own", "s-", "fine-tuned SAE on fine-tuned"),
        ("fvu_transfer", "^--", "base SAE on fine-tuned (transfer)"),
    ]:
        right.plot(x, table[col], style, label=label)
    right.set(xlabel="layer", ylabel="held-out FVU", title="Transfer FVU", xticks=x)
    right.set_ylim(bottom=0)
    right.legend()
    fig.suptitle(f"Base vs fine-tuned SAE features{note}")
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
        n_new = int((df["status"] == "new").sum())
        ax.set(
            title=f"layer {layer} ({n_new} new not shown)",
            xlabel="base partner specialization",
            ylabel="fine-tuned specialization",
        )
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes.ravel()[len(layers) :]:
        ax.axis("off")
    fig.suptitle(f"Specialization, base vs fine-tuned{note}")
    _save(fig, path, dpi)
