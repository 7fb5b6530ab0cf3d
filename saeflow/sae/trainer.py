"""Train SAEs on cached activations, side by side, and evaluate them on held-out
tokens.

`Trainer` owns one SAE: `train_step` (forward, loss, backward, gradient all-reduce,
constrained optimizer step) and dead-latent bookkeeping. `TrainingRun` feeds
several trainers (the `sae.variants`) from one read of the activations and owns
the data position, curve logging, checkpoints and the progress bar. `evaluate`
scores a finished SAE.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from saeflow.sae.checkpoint import (
    fingerprint,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from saeflow.sae.data import ActivationSource
from saeflow.sae.distributed import DataParallel
from saeflow.sae.model import EncoderOutput, SAEShape, TopKSAE
from saeflow.sae.optimizer import SignScheduleFree
from saeflow.workflow.config import SAEConfig
from saeflow.workflow.io import atomic_path

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
LR_CONSTANT = {"adam": 2e-4, "signum": 5e-3}
"""lr = c / sqrt(M / 2^14): Gao et al. 2024 for Adam, EleutherAI sparsify for signum."""


@contextlib.contextmanager
def fast_fp32_matmuls(device: str) -> Iterator[None]:
    """fp32 matmuls with reduced-precision products and fp32 sums: TF32 on CUDA,
    bf16 through oneDNN on a CPU (AMX or AVX512-BF16 units do it in hardware;
    elsewhere oneDNN emulates it, slower than fp32). Tensors and weights stay
    fp32, so nothing is cast; the setting is restored on exit."""
    if device == "cuda":
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        before = torch.backends.mkldnn.matmul.fp32_precision
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = before
        else:
            torch.backends.mkldnn.matmul.fp32_precision = before


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
    """Latents of the saved SAE that fire on none of the training tokens (up to
    `dead_eval_tokens` of them): dead by the usual definition."""
    dead_at_end_fraction: float
    """Latents the training iterate had not fired for the last `dead_after_tokens`
    tokens when training stopped (what AuxK was treating as dead)."""
    tokens_seen: int
    """Training tokens processed."""
    steps: int
    """Optimizer steps."""
    tokens_per_s: float
    """Training throughput (steps only, excluding evaluation)."""


def default_lr(n_latents: int, optimizer: str = "adam") -> float:
    """Learning rate c / sqrt(M / 2^14), c = LR_CONSTANT[optimizer]."""
    return LR_CONSTANT[optimizer] / math.sqrt(n_latents / 2**14)


def _init_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0])


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """Each epoch's shuffle depends on (seed, epoch) only: resumable mid-run."""
    return np.random.default_rng([seed, 1, epoch])


def _unit_rows(w: torch.Tensor) -> None:
    w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))


class Trainer:
    """One SAE with its optimizer and dead-latent counters."""

    def __init__(
        self,
        source: ActivationSource,
        cfg: SAEConfig,
        seed: int,
        device: str,
        dp: DataParallel | None = None,
        sample: torch.Tensor | None = None,
    ) -> None:
        self.cfg, self.source, self.device = cfg, source, device
        self.seed, self.dp = seed, dp or DataParallel()
        torch.manual_seed(seed)
        shape = SAEShape(
            source.d_model, cfg.expansion * source.d_model, cfg.k, cfg.kind
        )
        self.sae = TopKSAE(shape, seed=seed)
        if sample is None:
            sample = source.sample(16_384, _init_rng(seed))
        self.sae.init_from_data(sample)
        self.sae.to(device)
        self.lr = (
            cfg.lr if cfg.lr is not None else default_lr(shape.n_latents, cfg.optimizer)
        )
        if cfg.optimizer == "signum":
            self.opt = SignScheduleFree(
                self.sae.parameters(),
                lr=self.lr,
                warmup_steps=cfg.warmup_steps,
                constraints={self.sae.W_dec: _unit_rows},
            )
        else:
            # eps as in Gao et al. 2024: the default 1e-8 is large next to tiny grads.
            self.opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr, eps=6.25e-10)
        self.aux_k = cfg.aux_k if cfg.aux_k is not None else source.d_model // 2
        self.since_fired = torch.zeros(shape.n_latents, dtype=torch.long, device=device)
        self.steps_total = max(1, int(cfg.epochs * source.n_train // cfg.batch_size))
        self.step = 0
        bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and torch.device(device).type == "cuda"
        )
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.precision = "bfloat16" if bf16 else cfg.precision.replace("auto", "fp32")

    def dead_mask(self) -> torch.Tensor:
        """[M] bool: latents silent for at least `dead_after_tokens` tokens."""
        return self.since_fired >= self.cfg.dead_after_tokens

    def _autocast(self) -> contextlib.AbstractContextManager:
        device = torch.device(self.device).type
        if self.cfg.precision == "fast-fp32":
            return fast_fp32_matmuls(device)
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device, self.autocast_dtype)

    def _current_lr(self) -> float:
        if isinstance(self.opt, SignScheduleFree):
            return self.opt.current_lr()
        lr = self.lr * min(1.0, (self.step + 1) / max(1, self.cfg.warmup_steps))
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimizer step on this rank's slice x: [B / world, D] of the batch."""
        lr = self._current_lr()
        with self._autocast():
            out = self.sae(x, self.dead_mask(), self.aux_k, self.dp.sum)
        loss = out.fvu + self.cfg.aux_coef * out.aux_loss
        if out.l1 is not None:
            loss = loss + self.cfg.l1_coef * out.l1
        loss.backward()
        self.dp.sum_grads(self.sae.parameters())
        self.sae.project_decoder_grad()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._renormalize_decoder()
        active = out.code.vals > 0
        fired = torch.zeros_like(self.since_fired, dtype=torch.bool)
        fired[out.code.idx[active]] = True
        fired = self.dp.any(fired)
        self.since_fired += len(x) * self.dp.world
        self.since_fired[fired] = 0
        self.step += 1
        scalars = torch.stack(
            [loss.detach(), out.fvu.detach(), out.aux_loss.detach()]
            + [active.sum(1).float().mean() / self.dp.world]
        )
        loss_, fvu, aux, l0 = self.dp.sum(scalars.float()).tolist()
        return {
            "loss": loss_,
            "fvu": fvu,
            "aux_loss": aux,
            "l0": l0,
            "dead_fraction": self.dead_mask().float().mean().item(),
            "lr": lr,
        }

    def _renormalize_decoder(self) -> None:
        # SignScheduleFree projects its own iterate inside the step.
        if not isinstance(self.opt, SignScheduleFree):
            self.sae.renormalize_decoder()

    def finalize(self) -> None:
        """Put the weights to evaluate and save into the SAE (schedule-free: the
        average x, whose decoder rows are then made unit-norm again)."""
        if isinstance(self.opt, SignScheduleFree):
            with torch.no_grad():
                for p in self.sae.parameters():
                    if "x" in self.opt.state.get(p, {}):
                        p.copy_(self.opt.state[p]["x"])
            self.sae.fold_decoder_norms()
        self.sae.eval()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this SAE bit for bit."""
        return {
            "sae": self.sae.state_dict(),
            "opt": self.opt.state_dict(),
            "since_fired": self.since_fired,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`."""
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["opt"])
        self.since_fired.copy_(state["since_fired"])
        self.step = state["step"]

    def fit(self, curve_path: str | Path) -> TrainResult:
        """Train for the configured epochs, logging a curve CSV; then evaluate."""
        run = TrainingRun(self.source, {"default": self}, self.cfg, self.seed)
        result = run.run()["default"]
        _write_curve(run.rows["default"], curve_path)
        return result


class TrainingRun:
    """Trainers fed the same batches, with a resumable data position.

    The shared keys of `cfg` (batch_size, epochs, shuffle_chunks, log_every,
    checkpoint_every, tensorboard) are the run's; each trainer has its own config.
    """

    def __init__(
        self,
        source: ActivationSource,
        trainers: dict[str, Trainer],
        cfg: SAEConfig,
        seed: int,
        checkpoint_dir: str | Path | None = None,
        tensorboard_dir: str | Path | None = None,
    ) -> None:
        self.source, self.trainers, self.cfg, self.seed = source, trainers, cfg, seed
        self.dp = next(iter(trainers.values())).dp
        if source.n_train < cfg.batch_size:
            raise ValueError(
                f"sae.batch_size={cfg.batch_size} exceeds the {source.n_train} "
                f"training tokens in {[str(p) for p in source.paths]}"
            )
        self.steps_total = max(1, int(cfg.epochs * source.n_train // cfg.batch_size))
        self.step = self.epoch = self.batch_in_epoch = 0
        self.seconds = 0.0
        self.rows: dict[str, list[dict[str, float]]] = {n: [] for n in trainers}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.key = fingerprint(
            {
                "configs": {n: t.cfg.to_dict() for n, t in trainers.items()},
                "seed": seed,
                "init_seeds": {n: t.seed for n, t in trainers.items()},
                "data": [str(p) for p in source.paths],
                "n_train": source.n_train,
            }
        )
        self.writers = _tensorboard_writers(
            tensorboard_dir if cfg.tensorboard and self.dp.is_main else None, trainers
        )

    def _batches(self) -> Iterator[torch.Tensor]:
        device = next(iter(self.trainers.values())).device
        while True:
            yield from (
                self.dp.shard(x).to(device)
                for x in self.source.train_batches(
                    self.cfg.batch_size,
                    _epoch_rng(self.seed, self.epoch),
                    self.cfg.shuffle_chunks,
                    skip=self.batch_in_epoch,
                )
            )
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def run(self) -> dict[str, TrainResult]:
        """Train to the end (resuming from a checkpoint if there is one); evaluate."""
        self._resume()
        batches = self._batches()
        bar = tqdm(
            total=self.steps_total,
            initial=self.step,
            desc="train_sae",
            unit="step",
            disable=not self.dp.is_main,
        )
        while self.step < self.steps_total:
            x = next(batches)
            t0 = time.perf_counter()
            metrics = {n: t.train_step(x) for n, t in self.trainers.items()}
            self.seconds += time.perf_counter() - t0
            self.step += 1
            self.batch_in_epoch += 1
            bar.update()
            if self.step % self.cfg.log_every == 0 or self.step == self.steps_total:
                self._log(metrics)
            every = self.cfg.checkpoint_every
            if every and self.step % every == 0 and self.step < self.steps_total:
                self._checkpoint()
        bar.close()
        return self._finish()

    def _log(self, metrics: dict[str, dict[str, float]]) -> None:
        tokens = self.step * self.cfg.batch_size
        for name, m in metrics.items():
            row = {"step": self.step, "tokens": tokens, **m}
            row["tokens_per_s"] = tokens / max(self.seconds, 1e-9)
            self.rows[name].append(row)
            if name in self.writers:
                for key, value in row.items():
                    if key not in ("step", "tokens"):
                        self.writers[name].add_scalar(key, value, tokens)

    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None or not self.dp.is_main:
            return
        state = {
            "trainers": {n: t.state_dict() for n, t in self.trainers.items()},
            "position": (self.step, self.epoch, self.batch_in_epoch),
            "seconds": self.seconds,
            "rows": self.rows,
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(self.checkpoint_dir, state, self.key)

    def _resume(self) -> None:
        if self.checkpoint_dir is None:
            return
        state = load_checkpoint(self.checkpoint_dir, self.key)
        if state is None:
            return
        for name, trainer in self.trainers.items():
            trainer.load_state_dict(state["trainers"][name])
        self.step, self.epoch, self.batch_in_epoch = state["position"]
        self.seconds, self.rows = state["seconds"], state["rows"]
        torch.set_rng_state(state["torch_rng"])

    def remove_checkpoint(self) -> None:
        """Delete the checkpoint folder (once the outputs are written)."""
        if self.checkpoint_dir is not None:
            remove_checkpoint(self.checkpoint_dir)

    def _finish(self) -> dict[str, TrainResult]:
        for writer in self.writers.values():
            writer.close()
        tokens_seen = self.steps_total * self.cfg.batch_size
        results = {}
        for name, t in self.trainers.items():
            t.finalize()
            # Every rank evaluates (cheap, keeps ranks in step); rank 0 writes.
            results[name] = TrainResult(
                eval=evaluate(t.sae, self.source, self.cfg.batch_size * 4),
                dead_fraction=dead_fraction(
                    t.sae,
                    self.source,
                    self.cfg.batch_size * 4,
                    self.cfg.dead_eval_tokens,
                    _epoch_rng(self.seed, 0),
                    self.cfg.shuffle_chunks,
                ),
                dead_at_end_fraction=t.dead_mask().float().mean().item(),
                tokens_seen=tokens_seen,
                steps=self.steps_total,
                tokens_per_s=tokens_seen / max(self.seconds, 1e-9),
            )
            log.info("trained %s: %s", name, results[name])
        return results


def _tensorboard_writers(
    folder: str | Path | None, trainers: dict[str, Trainer]
) -> dict[str, Any]:
    """One SummaryWriter per trainer, or none when off or not installed."""
    if folder is None:
        return {}
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("sae.tensorboard is on but tensorboard is not installed; skipped")
        return {}
    return {n: SummaryWriter(str(Path(folder) / n)) for n in trainers}


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
        l0_total += _mark_fired(fired, code)
    total_var = sum_sq - (sum_x.pow(2).sum() / n).item()
    return EvalResult(
        fvu=sq_err / total_var,
        l0=l0_total / n,
        never_fired_fraction=1.0 - fired.float().mean().item(),
        n_tokens=n,
    )


@torch.no_grad()
def dead_fraction(
    sae: TopKSAE,
    source: ActivationSource,
    batch_size: int,
    max_tokens: int,
    rng: np.random.Generator,
    pool_chunks: int,
) -> float:
    """Fraction of latents that fire on none of up to `max_tokens` shuffled
    training tokens (one epoch's batches: the last partial batch is left out).

    The held-out never-fired fraction overstates death: held-out text is a
    contiguous tail, so a latent for a topic that only occurs earlier never fires
    there (docs/performance.md). Gao et al. 2024 call a latent dead after 10 M
    tokens without firing.
    """
    device = sae.W_dec.device
    fired = torch.zeros(sae.shape.n_latents, dtype=torch.bool, device=device)
    n = 0
    for x in source.train_batches(batch_size, rng, pool_chunks):
        x = x[: max_tokens - n]
        _mark_fired(fired, sae.encode(x.to(device)))
        n += len(x)
        if n >= max_tokens:
            break
    return 1.0 - fired.float().mean().item()


def _mark_fired(fired: torch.Tensor, code: EncoderOutput) -> int:
    """Set `fired` for the code's active latents; return how many entries were."""
    active = code.vals > 0
    fired[code.idx[active]] = True
    return int(active.sum().item())


def write_curve(rows: list[dict[str, float]], path: str | Path) -> None:
    """Write training-curve rows (CURVE_FIELDS) as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


_write_curve = write_curve
