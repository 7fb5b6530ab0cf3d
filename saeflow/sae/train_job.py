"""The train_sae job: every SAE variant of one model × layer, from one data read.

`make_saes` writes the default variant where the rest of the workflow reads it
(`sae/`, `metrics.json`, `training_curve.csv/.png`) and each extra variant of
`sae.variants` under `variants/<name>/` beside them. Checkpoints go to
`checkpoint/` beside the outputs and are removed once the outputs are written.

Data parallel: with `n_procs > 1` (the rule's `gpu` resource) the job relaunches
itself as `python -m torch.distributed.run --standalone --nproc-per-node n -m
saeflow.sae.train_job <args.json>` and waits; each rank then runs `make_saes` with the
process group set up from torchrun's environment, and rank 0 writes the outputs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from saeflow.sae.data import ActivationSource
from saeflow.sae.distributed import DataParallel
from saeflow.sae.plots import plot_training_curve
from saeflow.sae.trainer import Trainer, TrainingRun, _init_rng, write_curve
from saeflow.workflow.config import SAEConfig
from saeflow.workflow.device import pick_device
from saeflow.workflow.io import write_json

log = logging.getLogger(__name__)


def make_saes(
    acts: list[str],
    cfg: SAEConfig,
    seed: int,
    device: str,
    out_dir: str | Path,
    metrics: str | Path,
    curve: str | Path,
    figure: str | Path,
    variants_dir: str | Path | None,
    title: str,
    n_procs: int = 1,
    init_seed: int | None = None,
) -> None:
    """Train the default SAE and every `cfg.variants` entry side by side.

    `seed` orders the data; `init_seed` (default `seed`) draws every SAE's
    initial weights.
    """
    args = dict(locals(), cfg=cfg.to_dict())
    if n_procs > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch(args, n_procs)
        return
    dp, device = DataParallel.from_env(pick_device(device))
    try:
        source = ActivationSource(acts, cfg.holdout_fraction)
        sample = source.sample(16_384, _init_rng(seed))
        trainers = {
            name: Trainer(
                source, c, seed if init_seed is None else init_seed, device, dp, sample
            )
            for name, c in cfg.variant_configs()
        }
        folder = Path(metrics).parent
        run = TrainingRun(
            source, trainers, cfg, seed, folder / "checkpoint", folder / "tensorboard"
        )
        results = run.run()
        if dp.is_main:
            if variants_dir is not None:
                Path(variants_dir).mkdir(parents=True, exist_ok=True)
            for name, trainer in trainers.items():
                v = Path(variants_dir or ".") / name
                paths = (
                    (out_dir, metrics, curve, figure)
                    if name == "default"
                    else (
                        v / "sae",
                        v / "metrics.json",
                        v / "training_curve.csv",
                        v / "training_curve.png",
                    )
                )
                _write_outputs(
                    trainer,
                    results[name],
                    run.rows[name],
                    source,
                    dp,
                    *paths,
                    f"{title} ({name})",
                )
            run.remove_checkpoint()
        dp.barrier()
    finally:
        dp.close()


def _write_outputs(
    trainer, result, rows, source, dp, out_dir, metrics, curve, figure, title
) -> None:
    trainer.sae.save(out_dir)
    write_curve(rows, curve)
    write_json(
        {
            **result._asdict(),
            "eval": result.eval._asdict(),
            "config": trainer.cfg.to_dict(),
            "kind": trainer.cfg.kind,
            "n_latents": trainer.sae.shape.n_latents,
            "d_in": source.d_model,
            "n_train_tokens": source.n_train,
            "lr": trainer.lr,
            "world_size": dp.world,
            "precision": trainer.precision,
        },
        metrics,
    )
    plot_training_curve(pd.read_csv(curve), title, figure)


def _relaunch(args: dict, n_procs: int) -> None:
    """Run this job under torchrun with n_procs ranks; raise if any rank fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(args | {"n_procs": 1}, f, default=str)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n_procs}",
        "-m",
        "saeflow.sae.train_job",
        f.name,
    ]
    log.info("relaunching under torchrun: %s", " ".join(cmd))
    try:
        done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    finally:
        os.unlink(f.name)
    if done.returncode:
        raise RuntimeError(f"torchrun exited with {done.returncode}: {' '.join(cmd)}")


def main(argv: list[str]) -> None:
    """torchrun entry point: `python -m saeflow.sae.train_job args.json`."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    args = json.loads(Path(argv[0]).read_text())
    args["cfg"] = SAEConfig.from_dict(args["cfg"], "sae: ")
    make_saes(**args)


if __name__ == "__main__":
    main(sys.argv[1:])
