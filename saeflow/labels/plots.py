"""The labels figure: per scorer, each feature's AUROC for its label, a random
label and a shuffled label, joined per feature, with the chance line at 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from saeflow.workflow.plots import plt, save_figure

KINDS = (("label", "label"), ("random_label", "random"), ("shuffled_label", "shuffled"))


def plot_label_scores(df: pd.DataFrame, scorers: tuple[str, ...], path: str | Path):
    """One panel per scorer; a grey line per feature across its three labels."""
    fig, axes = plt.subplots(1, len(scorers), figsize=(4 * len(scorers), 3.8))
    for ax, scorer in zip(np.atleast_1d(axes), scorers, strict=True):
        cols = [scorer if k == "label" else f"{k}_{scorer}" for k, _ in KINDS]
        data = df[[f"{c}_auroc" for c in cols]].dropna()
        x = np.arange(len(KINDS))
        for row in data.to_numpy():
            ax.plot(x, row, color="#bbbbbb", lw=0.8, marker="o", ms=3)
        if len(data):
            ax.plot(x, data.median().to_numpy(), color="#2b6cb0", lw=2.5, marker="s")
        ax.axhline(0.5, color="#c53030", ls="--", lw=1)
        ax.set(
            xticks=x,
            xticklabels=[name for _, name in KINDS],
            ylim=(-0.02, 1.02),
            title=f"{scorer} ({len(data)} features)",
            ylabel="AUROC" if scorer == scorers[0] else None,
        )
    fig.suptitle("Label scores vs baselines (blue: median; red: chance)")
    save_figure(fig, path)
