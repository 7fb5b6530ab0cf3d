"""Train one top-k SAE on cached activations and evaluate it on held-out tokens.

The loop is split into `train_step` (forward, loss, backward, constrained
optimizer step), dead-latent bookkeeping, periodic curve logging, and `evaluate`.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from saeflow.config import SAEConfig
from saeflow.data import ActivationSource
from saeflow.io import atomic_path
from saeflow.sae import SAEShape, TopKSAE

log = logging.getLogger(__name__)

CURVE_FIELDS = [
    "step",
    "tokens",
    "loss",
    "fvu",
    "aux_loss",
    "l0",
    "dead_fraction",
    "lr",
    "tokens_per_s",
]


class EvalResult(NamedTuple):
    """Quality of an SAE on held-out tokens."""

    fvu: float
    """Fraction of variance unexplained: Σ‖x - x̂‖² / Σ‖x - mean(x)‖²."""
    l0: float
    """Mean number of non-zero latents per token."""
    never_fired_fraction: float
    """Fraction of latents that never fire on the held-out tokens."""
    n_tokens: int
    """Held-out tokens evaluated."""


class TrainResult(NamedTuple):
    """Summary of a training run (saved as metrics.json)."""

    eval: EvalResult
    """Held-out quality."""
    dead_fraction: float
    """Latents not fired in the last `dead_after_tokens` training tokens."""
    tokens_seen: int
    """Training tokens processed."""
    steps: int
    """Optimizer steps."""
    tokens_per_s: float
    """Training throughput (steps only, excluding evaluation)."""


def default_lr(n_latents: int) -> float:
    """Learning rate scaled as 2e-4 / sqrt(M / 2^14) (Gao et al. 2024)."""
    return 2e-4 / math.sqrt(n_latents / 2**14)


class Trainer:
    """Holds the SAE, optimizer and dead-latent counters for one training run."""

    def __init__(
        self, source: ActivationSource, cfg: SAEConfig, seed: int, device: str
    ) -> None:
        self.cfg, self.source, self.device = cfg, source, device
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        shape = SAEShape(source.d_model, cfg.expansion * source.d_model, cfg.k)
        self.sae = TopKSAE(shape, seed=seed)
        self.sae.init_from_data(source.sample(16_384, self.rng))
        self.sae.to(device)
        self.lr = cfg.lr if cfg.lr is not None else default_lr(shape.n_latents)
        # eps as in Gao et al. 2024: the default 1e-8 is large next to tiny grads.
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr, eps=6.25e-10)
        self.aux_k = cfg.aux_k if cfg.aux_k is not None else source.d_model // 2
        self.since_fired = torch.zeros(shape.n_latents, dtype=torch.long, device=device)
        self.steps_total = max(1, int(cfg.epochs * source.n_train // cfg.batch_size))
        self.step = 0

    def dead_mask(self) -> torch.Tensor:
        """[M] bool: latents silent for at least `dead_after_tokens` tokens."""
        return self.since_fired >= self.cfg.dead_after_tokens

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch x: [B, D]; returns scalar metrics."""
        warm = min(1.0, (self.step + 1) / max(1, self.cfg.warmup_steps))
        for group in self.opt.param_groups:
            group["lr"] = self.lr * warm
        out = self.sae(x, self.dead_mask(), self.aux_k)
        loss = out.fvu + self.cfg.aux_coef * out.aux_loss
        loss.backward()
        self.sae.project_decoder_grad()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sae.renormalize_decoder()
        fired = torch.zeros_like(self.since_fired, dtype=torch.bool)
        fired[out.code.idx[out.code.vals > 0]] = True
        self.since_fired += len(x)
        self.since_fired[fired] = 0
        self.step += 1
        return {
            "loss": loss.item(),
            "fvu": out.fvu.item(),
            "aux_loss": out.aux_loss.item(),
            "l0": (out.code.vals > 0).sum(1).float().mean().item(),
            "dead_fraction": self.dead_mask().float().mean().item(),
            "lr": self.lr * warm,
        }

    def batches(self):
        """Training batches across epochs until `steps_total` steps are done."""
        while True:
            for x in self.source.train_batches(
                self.cfg.batch_size, self.rng, self.cfg.shuffle_chunks
            ):
                yield x.to(self.device)

    def fit(self, curve_path: str | Path) -> TrainResult:
        """Train for the configured epochs, logging a curve CSV; then evaluate."""
        seconds, rows = 0.0, []
        batches = self.batches()
        for _ in tqdm(range(self.steps_total), desc="train_sae", unit="step"):
            x = next(batches)
            t0 = time.perf_counter()
            metrics = self.train_step(x)
            seconds += time.perf_counter() - t0
            if self.step % self.cfg.log_every == 0 or self.step == self.steps_total:
                tokens = self.step * self.cfg.batch_size
                rows.append(
                    {
                        "step": self.step,
                        "tokens": tokens,
                        **metrics,
                        "tokens_per_s": tokens / seconds,
                    }
                )
        _write_curve(rows, curve_path)
        tokens_seen = self.steps_total * self.cfg.batch_size
        result = TrainResult(
            eval=evaluate(self.sae, self.source, self.cfg.batch_size * 4),
            dead_fraction=self.dead_mask().float().mean().item(),
            tokens_seen=tokens_seen,
            steps=self.steps_total,
            tokens_per_s=tokens_seen / max(seconds, 1e-9),
        )
        log.info("trained: %s", result)
        return result


@torch.no_grad()
def evaluate(sae: TopKSAE, source: ActivationSource, batch_size: int) -> EvalResult:
    """Held-out FVU (against the held-out mean), L0 and never-fired fraction."""
    device = sae.W_dec.device
    sq_err = sum_x = sum_sq = 0.0
    n = 0
    l0_total = 0.0
    fired = torch.zeros(sae.shape.n_latents, dtype=torch.bool, device=device)
    for x in source.holdout_batches(batch_size):
        x = x.to(device)
        code = sae.encode(x)
        recon = sae.decode(code)
        xs = x.double()
        sq_err += (xs - recon.double()).pow(2).sum().item()
        sum_x = sum_x + xs.sum(0)
        sum_sq += xs.pow(2).sum().item()
        n += len(x)
        active = code.vals > 0
        l0_total += active.sum().item()
        fired[code.idx[active]] = True
    total_var = sum_sq - (sum_x.pow(2).sum() / n).item()
    return EvalResult(
        fvu=sq_err / total_var,
        l0=l0_total / n,
        never_fired_fraction=1.0 - fired.float().mean().item(),
        n_tokens=n,
    )


def _write_curve(rows: list[dict[str, float]], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
