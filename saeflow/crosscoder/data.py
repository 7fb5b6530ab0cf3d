"""Both models' activations of the same tokens, side by side, for a crosscoder.

A two-model crosscoder reads x = [s_base · x_base, s_ft · x_ft] (2D wide) and
has one decoder half per model (Lindsey et al. 2024). Each model's activations
are first scaled to mean squared norm D (s_m = sqrt(D / E‖x_m‖²)), so that
neither model's loss dominates the other's by its activation scale alone; the
sum of squared errors over the concatenation is then the sum of the two
models' losses, which is the crosscoder objective without a decoder-norm
penalty (BatchTopK needs none). Rows pair up only when both caches hold the same
tokens in the same order (a shared tokenizer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from saeflow.compare.coactivation import TokenAlignmentError, align_tokens
from saeflow.sae.data import ActivationSource, Span, iter_rows

SCALE_SAMPLE = 16_384
"""Rows per model used to estimate its scale."""


def check_same_tokens(base: str | Path, finetuned: str | Path) -> None:
    """Refuse two caches whose rows are not the same tokens in the same order."""
    if not align_tokens(base, finetuned, 1.0).report["identical"]:
        raise TokenAlignmentError(
            f"{base} and {finetuned} do not hold the same tokens: the crosscoder "
            "reads both models on identical tokens (a shared tokenizer)"
        )


class PairedActivationSource(ActivationSource):
    """An ActivationSource whose rows are both models' scaled activations.

    Same train / held-out split as the base caches' (which the fine-tuned
    caches must mirror row for row); `d_model` is 2D, `model_dim` D.
    """

    def __init__(
        self,
        base_paths: Sequence[str | Path],
        finetuned_paths: Sequence[str | Path],
        holdout_fraction: float,
    ) -> None:
        super().__init__(base_paths, holdout_fraction)
        self.partner = ActivationSource(finetuned_paths, holdout_fraction)
        for b, f in zip(self.paths, self.partner.paths, strict=True):
            check_same_tokens(b, f)
        self.model_dim = self.d_model
        rng = np.random.default_rng(0)  # the scales are data, not a seeded choice
        self.scales = tuple(
            (self.model_dim / float(s.sample(SCALE_SAMPLE, rng).pow(2).sum(1).mean()))
            ** 0.5
            for s in (ActivationSource(base_paths, holdout_fraction), self.partner)
        )
        self.d_model = 2 * self.model_dim

    def _join(self, base: np.ndarray, finetuned: np.ndarray) -> np.ndarray:
        sb, sf = self.scales
        return np.concatenate([base * sb, finetuned * sf], axis=1).astype(np.float32)

    def _read(self, spans: Sequence[Span]) -> np.ndarray:
        return self._join(super()._read(spans), self.partner._read(spans))

    def holdout_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The held-out rows, [≤ batch_size, 2D] float32, in file order."""
        pairs = zip(
            iter_rows(self.paths, batch_size, self.holdout),
            iter_rows(self.partner.paths, batch_size, self.holdout),
            strict=True,
        )
        for b, f in pairs:
            yield torch.from_numpy(self._join(b.numpy(), f.numpy()))

    def all_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every row (train and held out), [≤ batch_size, 2D], in file order."""
        pairs = zip(
            iter_rows(self.paths, batch_size),
            iter_rows(self.partner.paths, batch_size),
            strict=True,
        )
        for b, f in pairs:
            yield torch.from_numpy(self._join(b.numpy(), f.numpy()))
