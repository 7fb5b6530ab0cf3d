"""Typed config of the examples stage (the `examples` block of config.yaml), kept
free of heavy imports (torch, transformers) so that the workflow can build it while
parsing.
"""

from __future__ import annotations

from dataclasses import dataclass

from saeflow.workflow.config import ConfigError, _FromDict


@dataclass(frozen=True)
class ExampleConfig(_FromDict):
    """How many examples of which kind are kept per feature (the `examples` block)."""

    activate: bool = True
    """Whether the stage runs (read by the workflow; the labels stage needs it)."""
    n_top: int = 20
    """Top-activating contexts per feature (one per document; split=explain)."""
    n_quantiles: int = 5
    """Activation-quantile bins that scoring examples are drawn from."""
    per_quantile: int = 3
    """Examples drawn per quantile bin (split=score)."""
    n_negative_random: int = 10
    """Random contexts where the feature is zero on every token (split=score)."""
    n_negative_similar: int = 10
    """Contexts centred on one of the feature's top tokens, feature zero throughout."""
    reservoir: int = 200
    """Active occurrences sampled uniformly per feature to estimate quantiles."""
    before: int = 12
    """Tokens kept before the peak (within the same document window)."""
    after: int = 4
    """Tokens kept after the peak."""
    batch_size: int = 4096
    """Tokens encoded at once."""

    def __post_init__(self) -> None:
        for name in ("n_top", "n_quantiles", "reservoir", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"examples.{name} must be >= 1")
        if self.reservoir < self.n_quantiles:
            raise ConfigError("examples.reservoir must be >= examples.n_quantiles")
