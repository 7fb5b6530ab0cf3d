"""The crosscoder figure: relative decoder norms per layer (PNG, atomic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from saeflow.workflow.plots import plt, save_figure

CLASS_COLORS = {
    "base_only": "#718096",
    "shared": "#a0aec0",
    "finetuned_only": "#2b6cb0",
    "base_only_artifact": "#e2e8f0",
    "finetuned_only_artifact": "#bee3f8",
}


def plot_relative_norms(
    latents: dict[int, pd.DataFrame],
    thresholds: dict[str, float],
    path: str | Path,
) -> None:
    """Histogram of r = ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖) per layer, stacked by final
    class (exclusive latents Latent Scaling calls artifacts shown apart)."""
    layers = sorted(latents)
    fig, axes = plt.subplots(
        1, len(layers), figsize=(4 * len(layers), 3.4), squeeze=False
    )
    bins = np.linspace(0, 1, 41)
    for ax, layer in zip(axes[0], layers, strict=True):
        df = latents[layer]
        present = [c for c in CLASS_COLORS if (df["final_class"] == c).any()]
        ax.hist(
            [df.loc[df["final_class"] == c, "relative_norm"] for c in present],
            bins=bins,
            stacked=True,
            color=[CLASS_COLORS[c] for c in present],
            label=[f"{c} ({(df['final_class'] == c).sum()})" for c in present],
        )
        for key in ("base_only_max", "finetuned_only_min"):
            ax.axvline(thresholds[key], color="#c53030", ls="--", lw=1)
        ax.set(
            yscale="log",
            title=f"layer {layer}",
            xlabel="relative decoder norm (0 base, 1 fine-tuned)",
            ylabel="latents",
        )
        ax.legend(fontsize=7)
    fig.suptitle("Crosscoder latents by relative decoder norm")
    fig.tight_layout()
    save_figure(fig, path)
