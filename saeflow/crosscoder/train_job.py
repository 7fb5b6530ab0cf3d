"""The train_crosscoder job: one BatchTopK crosscoder of one layer, one seed.

The crosscoder is a `TopKSAE` of kind batchtopk on the 2D-wide paired input
(saeflow.crosscoder.data), trained by the SAE trainer, saved like an SAE; its
`metrics.json` adds the two models' scales and each model's held-out FVU, so it
can be set beside the separately trained SAEs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from saeflow.crosscoder.data import PairedActivationSource
from saeflow.sae.model import TopKSAE
from saeflow.sae.plots import plot_training_curve
from saeflow.sae.trainer import Trainer, TrainingRun, _init_rng, write_curve
from saeflow.workflow.config import SAEConfig
from saeflow.workflow.device import pick_device
from saeflow.workflow.io import write_json

log = logging.getLogger(__name__)


def make_crosscoder(
    base_acts: list[str],
    finetuned_acts: list[str],
    cfg: SAEConfig,
    seed: int,
    init_seed: int,
    device: str,
    out_dir: str | Path,
    metrics: str | Path,
    curve: str | Path,
    figure: str | Path,
    title: str,
) -> None:
    """Train one crosscoder (`cfg` from CrosscoderConfig.sae_config)."""
    device = pick_device(device)
    source = PairedActivationSource(base_acts, finetuned_acts, cfg.holdout_fraction)
    sample = source.sample(16_384, _init_rng(seed))
    trainer = Trainer(source, cfg, init_seed, device, sample=sample)
    folder = Path(metrics).parent
    run = TrainingRun(source, {"default": trainer}, cfg, seed, folder / "checkpoint")
    result = run.run()["default"]
    trainer.sae.save(out_dir)
    write_curve(run.rows["default"], curve)
    per_model = per_model_fvu(trainer.sae, source, cfg.batch_size * 4)
    write_json(
        {
            **result._asdict(),
            "eval": result.eval._asdict(),
            "fvu_per_model": per_model,
            "scales": list(source.scales),
            "model_dim": source.model_dim,
            "n_latents": trainer.sae.shape.n_latents,
            "k": cfg.k,
            "kind": cfg.kind,
            "config": cfg.to_dict(),
            "seed": seed,
            "init_seed": init_seed,
            "n_train_tokens": source.n_train,
        },
        metrics,
    )
    plot_training_curve(pd.read_csv(curve), title, figure)
    run.remove_checkpoint()
    log.info("crosscoder %s: held-out FVU per model %s", title, per_model)


@torch.no_grad()
def per_model_fvu(
    cc: TopKSAE, source: PairedActivationSource, batch_size: int
) -> dict[str, Any]:
    """Held-out FVU of each model's half (each against its own held-out mean):
    the figure comparable with that model's separately trained SAE."""
    d = source.model_dim
    halves = {"base": slice(0, d), "finetuned": slice(d, 2 * d)}
    sums = {m: [0.0, torch.zeros(d, dtype=torch.float64), 0.0] for m in halves}
    n = 0
    for x in source.holdout_batches(batch_size):
        x = x.to(cc.W_dec.device)
        recon = cc.decode(cc.encode(x)).double()
        xd = x.double()
        for model, half in halves.items():
            s = sums[model]
            s[0] += (xd[:, half] - recon[:, half]).pow(2).sum().item()
            s[1] += xd[:, half].sum(0).cpu()
            s[2] += xd[:, half].pow(2).sum().item()
        n += len(x)
    return {
        model: err / (sq - (total.pow(2).sum() / n).item())
        for model, (err, total, sq) in sums.items()
    }
