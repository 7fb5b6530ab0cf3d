"""The SAE training curve figure (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from saeflow.workflow.plots import plt, save_figure


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
