"""Figures for people: matplotlib on the Agg backend, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from saeflow.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save a figure as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_specialization_by_layer(
    comparison: pd.DataFrame, consolidated: pd.DataFrame, title: str, path: str | Path
) -> None:
    """Left: average and maximum specialization per layer. Right: distribution of
    the top features' specialization per layer."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    layers = comparison["layer"].astype(str)
    left.bar(layers, comparison["max_specialization"], color="#c7d7ee", label="maximum")
    left.bar(
        layers,
        comparison["avg_specialization"],
        color="#2b6cb0",
        label="average (top features)",
    )
    left.set(
        xlabel="layer",
        ylabel="domain − general mean activation",
        title="Specialization per layer",
    )
    left.legend()
    groups = [
        consolidated.loc[consolidated["layer"] == v, "specialization"]
        for v in comparison["layer"]
    ]
    right.boxplot(groups, tick_labels=list(layers))
    right.set(xlabel="layer", ylabel="specialization", title="Top features per layer")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_training_curve(curve: pd.DataFrame, title: str, path: str | Path) -> None:
    """FVU and the fraction of latents AuxK treats as dead against training tokens."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(curve["tokens"], curve["fvu"], label="train FVU")
    ax.set(
        xlabel="tokens",
        ylabel="FVU",
        title=title,
        ylim=(0, max(1.0, curve["fvu"].max())),
    )
    ax2 = ax.twinx()
    ax2.plot(
        curve["tokens"],
        curve["dead_fraction"],
        color="#c53030",
        ls="--",
        label="silent for dead_after_tokens (AuxK)",
    )
    ax2.set(ylabel="fraction of latents", ylim=(0, 1))
    fig.legend(loc="upper right")
    save_figure(fig, path)
