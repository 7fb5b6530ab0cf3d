"""Dead or just rare? Where the trained SAEs' latents fire, training vs held-out.

For each SAE of a finished run (``<root>/sae/{model}/layer_{L}/sae``) and its
activation caches, counts every latent's firings on all training tokens and on
all held-out tokens, and prints:

* dead: latents that fire on no training token (``metrics.json``'s
  ``dead_fraction`` when the training set is under ``sae.dead_eval_tokens``);
* never fired on held-out: latents silent on every held-out token;
* of those, the median number of training tokens they fire on;
* the held-out never-fired fraction expected if held-out tokens were drawn like
  training tokens: the mean over latents of exp(-fires × n_holdout / n_train)
  (Poisson). Far below the observed fraction means the held-out text differs
  (it is the contiguous tail of each cache), not that latents died.

    python bench/sae_dead.py --root results
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from saeflow.sae.data import ActivationSource
from saeflow.sae.model import TopKSAE
from saeflow.workflow.config import SAEConfig


@torch.no_grad()
def fire_counts(sae: TopKSAE, batches) -> torch.Tensor:
    """[M] number of tokens each latent is active on."""
    counts = torch.zeros(sae.shape.n_latents)
    for x in batches:
        code = sae.encode(x)
        counts.index_add_(0, code.idx.flatten(), (code.vals.flatten() > 0).float())
    return counts


def report(root: Path, model: str, layer: int, holdout_fraction: float) -> None:
    folder = root / "activations" / model / f"layer_{layer}"
    source = ActivationSource(
        [folder / "domain.h5", folder / "general.h5"], holdout_fraction
    )
    sae = TopKSAE.load(root / "sae" / model / f"layer_{layer}" / "sae")
    train = fire_counts(
        sae,
        source.train_batches(4096, np.random.default_rng(0), SAEConfig.shuffle_chunks),
    )
    held = fire_counts(sae, source.holdout_batches(4096))
    silent = held == 0
    expected = torch.exp(-train * source.n_holdout / source.n_train).mean().item()
    median = train[silent].median().item() if silent.any() else float("nan")
    print(
        f"{model} layer {layer}: dead {(train == 0).float().mean().item():.2%}  "
        f"never fired on held-out {silent.float().mean().item():.2%} "
        f"(they fire a median {median:.0f} times on training tokens; "
        f"{expected:.2%} expected if held-out were like training)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("results"))
    p.add_argument("--models", nargs="+", default=["base", "finetuned"])
    p.add_argument("--layers", nargs="+", type=int, default=[2, 4, 6])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for model in args.models:
        for layer in args.layers:
            report(args.root, model, layer, SAEConfig.holdout_fraction)


if __name__ == "__main__":
    main()
