"""What AuxK adds to a training step, and dense vs sparse decoding of its latents.

A step here is `TopKSAE.forward` (encode, decode, FVU and, when latents are
dead, the AuxK loss over the top ``D / 2`` dead latents) plus backward, on the
CPU. For each dead fraction it times, interleaved round by round (median):

* ``no AuxK``: the same step with no latent dead (the baseline);
* ``sparse``: AuxK decoded with `kernels.sparse_decode` (``aux_k`` gathered
  decoder rows per token);
* ``dense``: AuxK decoded as one matmul over all dead latents (zeros outside each
  token's top ``aux_k``).

The trainer takes ``dense`` while the dead latents number at most
``AUX_DENSE_FACTOR × aux_k`` (`saeflow.sae.model`).

    python bench/sae_auxk.py --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import saeflow.sae.model as sae_module
from saeflow.sae.model import SAEShape, TopKSAE

SHAPES = [(1024, 384, 3072, 32), (4096, 384, 12288, 32)]
"""(N, D, M, k): the default run's SAE, and the issue's first benchmark shape."""
DEAD_FRACTIONS = [0.01, 0.05, 0.1, 0.2]


def step(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor | None, factor: int) -> None:
    sae_module.AUX_DENSE_FACTOR = factor
    out = sae(x, dead, sae.shape.d_in // 2)
    (out.fvu + out.aux_loss / 32).backward()
    sae.zero_grad(set_to_none=True)


def bench_shape(n: int, d: int, m: int, k: int, rounds: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    sae = TopKSAE(SAEShape(d, m, k), seed=0)
    sae.init_from_data(x)
    aux_k = d // 2
    cases: dict[str, tuple[torch.Tensor | None, int]] = {"no AuxK": (None, 0)}
    for frac in DEAD_FRACTIONS:
        dead = torch.zeros(m, dtype=torch.bool)
        dead[torch.randperm(m, generator=gen)[: int(frac * m)]] = True
        cases[f"{frac:.0%} dead, sparse"] = (dead, 0)
        cases[f"{frac:.0%} dead, dense"] = (dead, m)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for dead, factor in cases.values():  # warm-up
        step(sae, x, dead, factor)
    for _ in range(rounds):
        for name, (dead, factor) in cases.items():
            t0 = time.perf_counter()
            step(sae, x, dead, factor)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["no AuxK"])
    print(f"\nN={n} D={d} M={m} k={k} aux_k={aux_k}, median of {rounds} rounds")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:22s} {t * 1e3:8.1f} ms  {t / base:5.2f}x no AuxK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for shape in SHAPES:
        bench_shape(*shape, args.rounds)


if __name__ == "__main__":
    main()
