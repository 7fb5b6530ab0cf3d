"""The features stage's figure: specialization by layer (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saeflow.workflow.plots import plt, save_figure


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
