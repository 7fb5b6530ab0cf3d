"""Time and peak memory of matching one layer pair of SAEs (saeflow.compare.matching).

Parts, each run in its own child process so that its peak RSS is its own:

* ``decoder``: decoder-cosine matching at M = 24,576, D = 768 (the bert-finbert
  size), as `compare_layer` does it: blocked cosines, top-`candidates` graph,
  sparse assignment (LAPJVsp), then the same against a null SAE for the
  threshold. Synthetic decoders with anisotropic rows: 60 % of the fine-tuned
  rows are noisy copies of permuted base rows (cosine ~0.5-0.95), 40 % are new.
  Prints how many planted pairs were recovered and matched.
* ``agreement``: the sparse assignment against the exact dense
  `linear_sum_assignment` at M = 4,096 (objective gap, identical partners).
* ``correlation``: co-activation sums for activation correlation at M = 24,576,
  k = 192 on N tokens (scatter, the CPU path), plus its assignment.
* ``scaling``: the seed floor's and Latent Scaling's per-token work at M =
  24,576, D = 768, k = 192 on N tokens of a synthetic cache: which latents fire
  (`latent_means`, once per replicate) and Latent Scaling of one SAE against the
  other (`latent_scaling`, twice per layer). The floor's matching is the
  ``decoder`` part once per replicate pair (R = 2: 6 pairs).

    python bench/compare_match.py                 # all parts
    python bench/compare_match.py --part decoder --m 24576 --d 768
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch

from saeflow.compare.coactivation import Codes, correlation_blocks, moments
from saeflow.compare.matching import assign, cosine_blocks, null_sae, null_threshold
from saeflow.sae.model import SAEShape, TopKSAE


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops() -> float:
    """fp32 matmul rate now, in this process (the machine may be shared)."""
    a = torch.randn(2048, 2048)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        torch.mm(a, a)
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / sorted(times)[1] / 1e9


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decoders(
    m: int, d: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Base and fine-tuned decoder rows; planted[j] = base partner of j or -1."""
    gen = torch.Generator().manual_seed(seed)
    # Anisotropic like real decoders: a decaying spectrum plus a shared mean.
    spectrum = torch.linspace(1.0, 0.1, d)
    base = torch.randn(m, d, generator=gen) * spectrum + 0.3 * spectrum
    base = torch.nn.functional.normalize(base, dim=1)
    perm = torch.randperm(m, generator=gen)
    n_kept = int(0.6 * m)
    noise = torch.rand(n_kept, 1, generator=gen) * 0.06 + 0.005  # per-row noise
    ft = torch.randn(m, d, generator=gen) * spectrum + 0.3 * spectrum
    ft[:n_kept] = (
        base[perm[:n_kept]]
        + noise * torch.randn(n_kept, d, generator=gen) * d**0.5 / 10
    )
    ft = torch.nn.functional.normalize(ft, dim=1)
    planted = np.full(m, -1)
    planted[:n_kept] = perm[:n_kept].numpy()
    return base, ft, planted


def sae_with_decoder(w_dec: torch.Tensor) -> TopKSAE:
    m, d = w_dec.shape
    sae = TopKSAE(SAEShape(d, m, 32))
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(w_dec)
    return sae


def part_decoder(args) -> dict:
    base, ft, planted = decoders(args.m, args.d)
    start = time.perf_counter()
    found = assign(cosine_blocks(ft, base, args.block), args.m, args.m, False, args.c)
    t_match = time.perf_counter() - start
    null = null_sae(sae_with_decoder(ft), seed=1)
    start = time.perf_counter()
    null_found = assign(
        cosine_blocks(null.W_dec.detach(), base, args.block),
        args.m,
        args.m,
        False,
        args.c,
    )
    t_null = time.perf_counter() - start
    thr = null_threshold(null_found, 0.99)
    matched = np.nan_to_num(found.score, nan=-1) > thr
    kept = planted >= 0
    return {
        "part": "decoder",
        "M": args.m,
        "D": args.d,
        "candidates": args.c,
        "seconds_match": round(t_match, 1),
        "seconds_null": round(t_null, 1),
        "seconds_total": round(t_match + t_null, 1),
        "peak_rss_mb": round(peak_mb()),
        "candidate_pairs": found.n_edges,
        "threshold": round(thr, 4),
        "planted_recovered": float((found.partner[kept] == planted[kept]).mean()),
        "planted_matched": float(matched[kept].mean()),
        "new_matched": float(matched[~kept].mean()),
    }


def part_agreement(args) -> dict:
    m = args.m_dense
    base, ft, _ = decoders(m, args.d, seed=2)
    start = time.perf_counter()
    dense = assign(cosine_blocks(ft, base, args.block), m, m, True, args.c)
    t_dense = time.perf_counter() - start
    start = time.perf_counter()
    sparse = assign(cosine_blocks(ft, base, args.block), m, m, False, args.c)
    t_sparse = time.perf_counter() - start
    obj_d, obj_s = np.nansum(dense.score), np.nansum(sparse.score)
    null = null_sae(sae_with_decoder(ft), seed=1)
    null_found = assign(
        cosine_blocks(null.W_dec.detach(), base, args.block), m, m, True, args.c
    )
    strong = np.nan_to_num(dense.score, nan=0) > null_threshold(null_found, 0.99)
    return {
        "part": "agreement",
        "M": m,
        "D": args.d,
        "candidates": args.c,
        "seconds_dense": round(t_dense, 1),
        "seconds_sparse": round(t_sparse, 1),
        "objective_gap": float((obj_d - obj_s) / obj_d),
        "same_partner_all": float((dense.partner == sparse.partner).mean()),
        "same_partner_matched": float(
            (dense.partner[strong] == sparse.partner[strong]).mean()
        ),
        "peak_rss_mb": round(peak_mb()),
    }


def raw_codes(n: int, m: int, k: int, rng: np.random.Generator):
    """[n, k] latent ids with Zipf-like frequencies and gamma activations."""
    p = 1.0 / np.arange(1, m + 1) ** 0.6
    idx = rng.choice(m, size=(n, k), p=p / p.sum())
    return idx, rng.gamma(2.0, 0.5, size=(n, k)).astype(np.float32)


def as_codes(idx: np.ndarray, val: np.ndarray, m: int) -> Codes:
    n, k = idx.shape
    mat = sp.csr_matrix((val.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), (n, m))
    mat.sum_duplicates()
    return Codes(mat)


def part_correlation(args) -> dict:
    rng = np.random.default_rng(0)
    bi, bv = raw_codes(args.n, args.m, args.k, rng)
    fi, fv = raw_codes(args.n, args.m, args.k, rng)
    # Half of the fine-tuned slots co-fire with base slots: feature perm[i] of
    # the fine-tuned side shadows base feature i.
    perm = rng.permutation(args.m)
    half = args.k // 2
    fi[:, :half], fv[:, :half] = perm[bi[:, :half]], bv[:, :half]
    b, f = as_codes(bi, bv, args.m), as_codes(fi, fv, args.m)
    mf, mb = moments(f.mat), moments(b.mat)
    start = time.perf_counter()
    blocks = correlation_blocks(f, b, mf, mb, "scatter", "cpu")
    found = assign(blocks, args.m, args.m, False, args.c)
    seconds = time.perf_counter() - start
    live = mb.frac_active > 0
    return {
        "part": "correlation",
        "M": args.m,
        "k": args.k,
        "N": args.n,
        "candidates": args.c,
        "seconds": round(seconds, 1),
        "seconds_per_1k_tokens": round(1000 * seconds / args.n, 2),
        "peak_rss_mb": round(peak_mb()),
        "planted_recovered_live": float(
            (found.partner[perm[live]] == np.flatnonzero(live)).mean()
        ),
    }


def part_scaling(args) -> dict:
    import tempfile
    from pathlib import Path

    import h5py

    from saeflow.compare.latent_scaling import latent_scaling
    from saeflow.compare.seed_floor import latent_means

    base, ft, _ = decoders(args.m, args.d)
    saes = []
    for w in (base, ft):
        sae = sae_with_decoder(w)
        sae.shape = SAEShape(args.d, args.m, args.k)
        saes.append(sae.eval())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name in ("base", "ft"):
            path = Path(tmp) / f"{name}.h5"
            x = rng.standard_normal((args.n, args.d)).astype(np.float16)
            with h5py.File(path, "w") as f:
                f.create_dataset("acts", data=x, chunks=(min(4096, args.n), args.d))
            paths.append(path)
        rows = np.arange(args.n)
        start = time.perf_counter()
        means = latent_means(saes[0], {"domain": paths[0]}, 4096, None)
        live = means["domain"] > 0
        t_live = time.perf_counter() - start
        start = time.perf_counter()
        result = latent_scaling(saes[1], saes[0], [(paths[1], rows, paths[0], rows)])
        t_ls = time.perf_counter() - start
    return {
        "part": "scaling",
        "M": args.m,
        "D": args.d,
        "k": args.k,
        "N": args.n,
        "seconds_latent_means": round(t_live, 1),
        "seconds_latent_scaling": round(t_ls, 1),
        "latent_scaling_seconds_per_1k_tokens": round(1000 * t_ls / args.n, 2),
        "live_fraction": float(live.mean()),
        "fired_fraction": float((result.n_tokens > 0).mean()),
        "peak_rss_mb": round(peak_mb()),
    }


PARTS = {
    "decoder": part_decoder,
    "agreement": part_agreement,
    "correlation": part_correlation,
    "scaling": part_scaling,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=list(PARTS))
    parser.add_argument("--m", type=int, default=24576, help="latents (decoder, corr)")
    parser.add_argument("--d", type=int, default=768, help="decoder width")
    parser.add_argument("--m-dense", type=int, default=4096, help="agreement M")
    parser.add_argument("--k", type=int, default=192, help="active latents per token")
    parser.add_argument("--n", type=int, default=5000, help="tokens (correlation)")
    parser.add_argument("--c", type=int, default=32, help="candidates per feature")
    parser.add_argument("--block", type=int, default=2048, help="rows per block")
    args, rest = parser.parse_known_args()
    if args.part:
        rate = matmul_gflops()
        out = PARTS[args.part](args)
        out["cpu_seconds"] = round(cpu_seconds(), 1)
        out["matmul_gflops_at_start"] = round(rate, 1)
        out["matmul_gflops_at_end"] = round(matmul_gflops(), 1)
        print(json.dumps(out), flush=True)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in PARTS:
        out = subprocess.run(
            [sys.executable, __file__, "--part", name, *sys.argv[1:]],
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip() or out.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
