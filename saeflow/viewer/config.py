"""The `viewer` block of config.yaml (kept apart so the Snakefile imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from saeflow.workflow.config import ConfigError, _FromDict


@dataclass(frozen=True)
class ViewerConfig(_FromDict):
    """What the viewer's data holds (the `viewer` block of config.yaml)."""

    activate: bool = True
    """Build the viewer's data in `rule all`."""
    hist_bins: int = 24
    """Bins of each feature's activation histogram."""
    headline_top_features: int = 10
    """Top features kept per headline (the chips; 'show all' shows these)."""
    batch_size: int = 4096
    """Tokens encoded at once while computing histograms and headline features."""
    examples_row_group: int = 2048
    """Rows per Parquet row group of the sorted examples (smaller: faster lookups)."""

    def __post_init__(self) -> None:
        for name in ("hist_bins", "headline_top_features", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"viewer.{name} must be >= 1")


MODEL_STATS = (
    "frac_active_domain",
    "frac_active_general",
    "mean_activation_domain",
    "specialization",
)
"""Columns of each model's nearest SAE feature shown on a crosscoder latent."""
