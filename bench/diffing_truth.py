"""Planted ground truth for the comparison stage: does saeflow find what changed?

Data. Two "models" read the same tokens and write activations in R^D (D = 64 by
default) built from known unit directions, drawn at random and split into four
kinds: shared, changed, new and lost. Two corpora, ``domain`` and ``general``,
of ``--docs`` documents of ``--doc-len`` tokens each.

* Base: each token is a non-negative mix of k = 4 distinct directions drawn
  from shared ∪ changed ∪ lost (Zipf-like frequencies, log-normal coefficients)
  plus small Gaussian noise.
* Fine-tuned: the same tokens, row for row, with the same coefficients on
  shared directions; changed directions ×3 on domain tokens only (same
  direction, domain activity moved: saeflow's ``changed``); lost directions
  dropped (coefficient 0); on a known subset of domain tokens (probability
  ``--new-rate``) one new direction added, which the base never has.

Both models' caches are written as the workflow writes them (acts float16
chunked, doc, window, pos, token_id, doc_ids) under a temporary folder,
``<tmp>/acts/{base,finetuned}/{domain,general}.h5``.

Pipeline (the real job functions): `saeflow.sae.train_job.make_saes` trains R
replicates per model (replicate r: data order ``seed + r``, init
``sae_init_seed(seed, model, r)``, as rules/sae.smk's train_sae and
train_sae_replicate), then `saeflow.compare.stages.make_layer_comparison` writes
matches.parquet, lost.parquet, the top table and layer_comparison.json.

Scoring. Every learned feature of replicate 0 is mapped to its closest truth
direction by decoder cosine; it *represents* that direction when the cosine is
at least ``--cos``. Per kind:

* new: recall = planted new directions represented by some fine-tuned feature
  of status ``new``; precision = ``new`` features that represent a planted new
  direction;
* lost: the same with base features of status ``lost`` (lost.parquet);
* changed: fine-tuned features of status ``changed``.

A line below the table gives saeflow's precision by nearest truth direction (at
any cosine), which separates a wrong status from a feature of the right kind
that the SAE learned blurred or split in two (cosine below ``--cos``).

For context the same figures for the raw single-pair reading (no seed floor,
no Latent Scaling): new = fine-tuned features unmatched in base replicate 0,
lost = every row of lost.parquet; changed is decided on matched features only,
which the floor does not touch, so its raw figures equal saeflow's.

Control: the same pipeline with the fine-tuned caches identical to the base
(its own SAE init seeds, so only SAE seed noise differs); the fine-tuning effect
interval should include 0 and new / lost should be at most ~1 % of the latents.

The BatchTopK crosscoder (`saeflow.crosscoder`, trained by the real
`make_crosscoder` with the SAEs' settings, twice the latents and twice k, two
seeds, analysed by the real `make_crosscoder_analysis`) gets a row: new =
stable fine-tuned-only latents that Latent Scaling does not call artifacts,
scored by their fine-tuned decoder half; lost = the same for base-only latents
by their base half. A crosscoder has no "changed" class (a shared latent
whose activity moved is not flagged), so that cell reads n/a. The control
line adds its robust stable exclusive latents.

    OMP_NUM_THREADS=1 python bench/diffing_truth.py
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from saeflow.compare.layer import LOST_STATUSES, STATUSES
from saeflow.compare.stages import make_layer_comparison
from saeflow.crosscoder.stages import make_crosscoder_analysis
from saeflow.crosscoder.train_job import make_crosscoder
from saeflow.sae.model import TopKSAE
from saeflow.sae.train_job import make_saes
from saeflow.workflow.config import (
    CompareConfig,
    CrosscoderConfig,
    SAEConfig,
    sae_init_seed,
)

log = logging.getLogger("diffing_truth")

KINDS = ("shared", "changed", "new", "lost")
CORPORA = ("domain", "general")
SAEFLOW = "matching + seed floor + Latent Scaling (saeflow)"
CHANGED_FACTOR = 3.0  # domain coefficients of changed directions in the fine-tune
CROSSCODER = "BatchTopK crosscoder, stable robust exclusive latents"
CC_SEEDS = 2


@dataclass(frozen=True)
class Sizes:
    """What the planted data looks like."""

    d: int
    """Activation width D."""
    n_dirs: dict[str, int]
    """Kind -> number of truth directions."""
    docs: int
    """Documents per corpus."""
    doc_len: int
    """Tokens per document."""
    k: int
    """Base directions per token."""
    new_rate: float
    """Probability that a fine-tuned domain token gains one new direction."""
    noise: float
    """Standard deviation of the Gaussian noise per coordinate."""


class Truth(NamedTuple):
    """The planted dictionary."""

    dirs: np.ndarray
    """[n_dirs, D] unit directions, kinds in KINDS order."""
    kind: np.ndarray
    """[n_dirs] kind of each direction (str)."""


class Score(NamedTuple):
    """Recall and precision of one flagged set against one planted kind."""

    recall: float
    """Planted directions of the kind represented by some flagged feature."""
    precision: float
    """Flagged features that represent a planted direction of the kind."""
    nearest_precision: float
    """Flagged features whose nearest truth direction (any cosine) is of the
    kind: tells a wrong status from a feature the SAE learned blurred or split."""
    n_flagged: int


# ---------------------------------------------------------------- planted data


def make_truth(sizes: Sizes, rng: np.random.Generator) -> Truth:
    n = sum(sizes.n_dirs.values())
    dirs = rng.standard_normal((n, sizes.d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    kind = np.concatenate([[k] * sizes.n_dirs[k] for k in KINDS])
    return Truth(dirs.astype(np.float32), kind)


def base_codes(
    truth: Truth, n: int, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Base tokens' k distinct directions [n, k] and coefficients [n, k].

    Drawn from shared ∪ changed ∪ lost with Zipf-like (1/sqrt(rank)) frequencies
    over a random ranking, so every kind has frequent and rare directions.
    """
    pool = np.flatnonzero(truth.kind != "new")
    weight = 1.0 / np.sqrt(1.0 + rng.permutation(len(pool)))
    # Gumbel top-k: k distinct draws per token with probabilities ∝ weight.
    keys = np.log(weight) + rng.gumbel(size=(n, len(pool)))
    idx = pool[np.argpartition(-keys, k, axis=1)[:, :k]]
    coef = np.exp(0.5 * rng.standard_normal((n, k)))
    return idx, coef.astype(np.float32)


def corpus_acts(
    truth: Truth, sizes: Sizes, domain: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paired [N, D] activations (base, fine-tuned) of one corpus, same tokens."""
    n = sizes.docs * sizes.doc_len
    idx, coef = base_codes(truth, n, sizes.k, rng)
    kind = truth.kind[idx]
    ft_coef = coef * np.where(kind == "lost", 0.0, 1.0)
    if domain:
        ft_coef = ft_coef * np.where(kind == "changed", CHANGED_FACTOR, 1.0)
    noise = sizes.noise * rng.standard_normal((n, sizes.d))
    base = np.einsum("nk,nkd->nd", coef, truth.dirs[idx]) + noise
    ft = np.einsum("nk,nkd->nd", ft_coef, truth.dirs[idx]) + noise
    if domain:
        new = np.flatnonzero(truth.kind == "new")
        gains = rng.random(n) < sizes.new_rate
        which = rng.choice(new, size=int(gains.sum()))
        amount = np.exp(0.5 * rng.standard_normal(len(which)))
        ft[gains] += amount[:, None] * truth.dirs[which]
    return base.astype(np.float32), ft.astype(np.float32)


def write_cache(
    path: Path, acts: np.ndarray, token_id: np.ndarray, prefix: str, doc_len: int
) -> None:
    """An activation cache in the layout saeflow.activations.cache writes."""
    n = len(acts)
    n_docs = n // doc_len
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "acts", data=acts.astype(np.float16), chunks=(1024, acts.shape[1])
        )
        f.create_dataset(
            "doc", data=np.repeat(np.arange(n_docs, dtype=np.int32), doc_len)
        )
        f.create_dataset("window", data=np.zeros(n, np.int16))
        f.create_dataset(
            "pos", data=np.tile(np.arange(doc_len, dtype=np.int16), n_docs)
        )
        f.create_dataset("token_id", data=token_id.astype(np.int32))
        f.create_dataset(
            "doc_ids",
            data=np.array([f"{prefix}-{i}" for i in range(n_docs)], dtype=object),
            dtype=h5py.string_dtype(),
        )


def write_caches(
    root: Path, truth: Truth, sizes: Sizes, rng: np.random.Generator
) -> dict[str, dict[str, str]]:
    """model -> corpus -> cache path; "control" is a copy of "base"."""
    paths: dict[str, dict[str, str]] = {m: {} for m in ("base", "finetuned", "control")}
    for corpus in CORPORA:
        base, ft = corpus_acts(truth, sizes, corpus == "domain", rng)
        token_id = rng.integers(0, 50_000, len(base))  # same tokens in both models
        for model, acts in (("base", base), ("finetuned", ft)):
            path = root / "acts" / model / f"{corpus}.h5"
            write_cache(path, acts, token_id, corpus, sizes.doc_len)
            paths[model][corpus] = str(path)
        control = root / "acts" / "control" / f"{corpus}.h5"
        control.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths["base"][corpus], control)
        paths["control"][corpus] = str(control)
    return paths


# ---------------------------------------------------------------- pipeline


def train_replicates(
    acts: dict[str, str], cfg: SAEConfig, seed: int, model: str, n: int, root: Path
) -> list[str]:
    """The replicates of one model's SAE, as rules/sae.smk trains them.

    `model` names the init seeds ("base" or "finetuned"); the control's
    fine-tuned SAEs are "finetuned" SAEs trained on base data.
    """
    out = []
    for r in range(n):
        folder = root / f"r{r}"
        t0 = time.perf_counter()
        make_saes(
            list(acts.values()),
            cfg,
            seed + r,
            "cpu",
            folder / "sae",
            folder / "metrics.json",
            folder / "training_curve.csv",
            folder / "training_curve.png",
            None,
            title=f"{root.name} r{r}",
            init_seed=sae_init_seed(seed, model, r),
        )
        fvu = json.loads((folder / "metrics.json").read_text())["eval"]["fvu"]
        log.info(
            "%s r%d trained in %.1f s, held-out FVU %.4f",
            root.name,
            r,
            time.perf_counter() - t0,
            fvu,
        )
        out.append(str(folder / "sae"))
    return out


def compare(
    saes_base: list[str],
    saes_ft: list[str],
    acts: dict[str, dict[str, str]],
    ft_model: str,
    cfg: CompareConfig,
    seed: int,
    out: Path,
) -> dict[str, str]:
    """make_layer_comparison into `out`; returns its output paths."""
    out.mkdir(parents=True, exist_ok=True)
    outs = {
        "matches": str(out / "matches.parquet"),
        "lost": str(out / "lost.parquet"),
        "top": str(out / f"top_{cfg.top_n}_compared_features.csv"),
        "summary": str(out / "layer_comparison.json"),
    }
    t0 = time.perf_counter()
    make_layer_comparison(
        saes_base,
        saes_ft,
        acts["base"],
        acts[ft_model],
        cfg,
        seed,
        (sae_init_seed(seed, "base"), sae_init_seed(seed, "finetuned")),
        "cpu",
        0,
        outs,
    )
    log.info("%s comparison in %.1f s", out.name, time.perf_counter() - t0)
    return outs


def crosscoders(
    acts: dict[str, dict[str, str]],
    ft_model: str,
    saes: dict[str, str],
    outs: dict[str, str],
    cfgs: tuple[SAEConfig, CrosscoderConfig, CompareConfig],
    seed: int,
    root: Path,
) -> pd.DataFrame:
    """Train CC_SEEDS crosscoders of base vs `ft_model`, analyse them against
    the comparison `outs`; returns latents.parquet, plus each latent's halves."""
    sae_cfg, cc_cfg, cmp_cfg = cfgs
    paths = []
    for s in range(CC_SEEDS):
        folder = root / f"seed_{s}"
        t0 = time.perf_counter()
        make_crosscoder(
            list(acts["base"].values()),
            list(acts[ft_model].values()),
            cc_cfg.sae_config(sae_cfg),
            seed + s,
            sae_init_seed(seed, "crosscoder", s),
            "cpu",
            folder / "crosscoder",
            folder / "metrics.json",
            folder / "training_curve.csv",
            folder / "training_curve.png",
            f"{root.name} seed {s}",
        )
        log.info("%s seed %d trained in %.1f s", root.name, s, time.perf_counter() - t0)
        paths.append(folder)
    analysis = {
        "latents": str(root / "latents.parquet"),
        "summary": str(root / "cc.json"),
    }
    make_crosscoder_analysis(
        [str(p / "crosscoder") for p in paths],
        [str(p / "metrics.json") for p in paths],
        list(acts["base"].values()),
        list(acts[ft_model].values()),
        {m: saes[m] for m in ("base", "finetuned")},
        {m: str(Path(saes[m]).parent / "metrics.json") for m in saes},
        outs["matches"],
        outs["lost"],
        cc_cfg,
        cmp_cfg,
        sae_cfg.holdout_fraction,
        seed,
        "cpu",
        0,
        analysis,
    )
    latents = pd.read_parquet(analysis["latents"])
    cc = TopKSAE.load(paths[0] / "crosscoder")
    d = cc.shape.d_in // 2
    latents.attrs["halves"] = {
        "base": cc.W_dec[:, :d].detach(),
        "finetuned": cc.W_dec[:, d:].detach(),
    }
    latents.attrs["summary"] = json.loads(Path(analysis["summary"]).read_text())
    return latents


def crosscoder_scores(latents: pd.DataFrame, truth: Truth, min_cos: float) -> dict:
    """new / lost scores of the robust stable exclusive latents; changed n/a."""
    out = {}
    for kind, cls, half in (
        ("new", "finetuned_only", "finetuned"),
        ("lost", "base_only", "base"),
    ):
        flagged = ((latents["final_class"] == cls) & latents["stable"]).to_numpy()
        near = nearest_to(latents.attrs["halves"][half], truth)
        out[kind] = score(flagged, near, truth, kind, min_cos)
    return out


# ---------------------------------------------------------------- scoring


class Nearest(NamedTuple):
    """Each learned feature's nearest truth direction."""

    index: np.ndarray
    """[M] index of the truth direction with the largest decoder cosine."""
    cos: np.ndarray
    """[M] that cosine."""

    def represents(self, min_cos: float) -> np.ndarray:
        """[M] the truth direction each feature represents, -1 for none."""
        return np.where(self.cos >= min_cos, self.index, -1)


def nearest(sae_path: str, truth: Truth) -> Nearest:
    return nearest_to(TopKSAE.load(sae_path).W_dec.detach(), truth)


def nearest_to(w: torch.Tensor, truth: Truth) -> Nearest:
    """Nearest truth direction of each row of `w` [M, D]."""
    w = F.normalize(w.float(), dim=1)
    best, arg = (w @ torch.from_numpy(truth.dirs).T).max(1)  # over (M, n_dirs)
    return Nearest(arg.numpy(), best.numpy())


def score(
    flagged: np.ndarray, near: Nearest, truth: Truth, kind: str, min_cos: float
) -> Score:
    """Recall / precision of the `flagged` features ([M] bool) for `kind`."""
    planted = np.flatnonzero(truth.kind == kind)
    hit = near.represents(min_cos)[flagged]
    right = (hit >= 0) & (truth.kind[np.maximum(hit, 0)] == kind)
    recall = len(set(hit[right].tolist())) / len(planted)
    n = int(flagged.sum())
    precision = float(right.mean()) if n else float("nan")
    near_right = truth.kind[near.index[flagged]] == kind
    return Score(recall, precision, float(near_right.mean()) if n else float("nan"), n)


def flags(
    outs: dict[str, str], n_ft: int, n_base: int
) -> dict[str, dict[str, tuple[np.ndarray, str]]]:
    """method -> kind -> ([M] bool flagged features, "finetuned" or "base")."""
    matches = pd.read_parquet(outs["matches"]).sort_values("finetuned_feature")
    lost = pd.read_parquet(outs["lost"])

    def mask(features: pd.Series, m: int) -> np.ndarray:
        out = np.zeros(m, bool)
        out[features.to_numpy()] = True
        return out

    changed = (matches["status"] == "changed").to_numpy()
    return {
        SAEFLOW: {
            "new": ((matches["status"] == "new").to_numpy(), "finetuned"),
            "lost": (
                mask(lost.loc[lost["status"] == "lost", "base_feature"], n_base),
                "base",
            ),
            "changed": (changed, "finetuned"),
        },
        "raw single-pair matching (no floor)": {
            "new": ((~matches["matched"]).to_numpy(), "finetuned"),
            "lost": (mask(lost["base_feature"], n_base), "base"),
            "changed": (changed, "finetuned"),
        },
    }


def coverage(near: Nearest, truth: Truth, min_cos: float) -> str:
    """How many planted directions of each kind some feature represents at all."""
    rep = near.represents(min_cos)
    have = set(rep[rep >= 0].tolist())
    parts = [
        f"{kind} {sum(i in have for i in np.flatnonzero(truth.kind == kind))}"
        f"/{int((truth.kind == kind).sum())}"
        for kind in KINDS
    ]
    return ", ".join(parts)


# ---------------------------------------------------------------- report


def floor_line(summary: dict) -> str:
    f = summary["seed_floor"]
    same = f["same_model_overlap"]
    return (
        f"seed floor: same-model overlap base {same['base']:.3f}, fine-tuned "
        f"{same['finetuned']:.3f}; cross-model {f['cross_model_overlap']:.3f}; "
        f"{f['verdict']}"
    )


def counts_line(summary: dict) -> str:
    ft = ", ".join(f"{s} {summary[f'n_{s}']}" for s in STATUSES)
    lost = ", ".join(
        f"{s} {summary[f'n_lost_{s}']}" for s in LOST_STATUSES if s != "lost"
    )
    return (
        f"fine-tuned statuses: {ft}; unmatched base ({summary['n_unmatched_base']}): "
        f"lost {summary['n_lost']}, {lost}"
    )


def table(results: dict[str, dict[str, Score]]) -> str:
    def cell(s: Score | None) -> str:
        if s is None:
            return "n/a"
        return f"{s.recall:.2f} / {s.precision:.2f} ({s.n_flagged})"

    lines = [
        "| method | new R / P (flagged) | lost R / P (flagged) "
        "| changed R / P (flagged) |",
        "|---|---|---|---|",
    ]
    for method, by_kind in results.items():
        row = " | ".join(cell(by_kind.get(k)) for k in ("new", "lost", "changed"))
        lines.append(f"| {method} | {row} |")
    return "\n".join(lines)


def nearest_line(by_kind: dict[str, Score]) -> str:
    parts = ", ".join(
        f"{kind} {by_kind[kind].nearest_precision:.2f}"
        for kind in ("new", "lost", "changed")
    )
    return (
        f"saeflow precision by nearest truth direction (any cosine): {parts} "
        "(above P: flagged features of the right kind the SAE learned blurred or "
        "split below the cosine threshold)"
    )


def control_line(summary: dict, n_latents: int) -> str:
    f = summary["seed_floor"]
    lo, hi = f["effect_ci"]
    new, lost = summary["n_new"], summary["n_lost"]
    ok = lo <= 0 <= hi and max(new, lost) <= 0.01 * n_latents
    return (
        f"control (fine-tuned caches = base caches): effect {f['effect']:+.3f} "
        f"[{lo:+.3f}, {hi:+.3f}], new {new} / lost {lost} of {n_latents} latents "
        f"({'as expected' if ok else 'NOT as expected'}: interval includes 0, "
        f"new and lost <= 1 %)"
    )


def cc_line(name: str, latents: pd.DataFrame) -> str:
    s = latents.attrs["summary"]
    fvu = s["fvu_per_model"]
    robust = {
        c: int(((latents["final_class"] == c) & latents["stable"]).sum())
        for c in ("finetuned_only", "base_only")
    }
    return (
        f"{name}: classes {s['counts']}; stable robust fine-tuned-only "
        f"{robust['finetuned_only']}, base-only {robust['base_only']} of "
        f"{len(latents)}; FVU base {fvu['base']['crosscoder'][0]:.3f} (SAE "
        f"{fvu['base']['separate_sae']:.3f}), fine-tuned "
        f"{fvu['finetuned']['crosscoder'][0]:.3f} (SAE "
        f"{fvu['finetuned']['separate_sae']:.3f}); agreement with the SAE matching "
        f"{s['agreement_with_sae_matching']}"
    )


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", type=int, default=64, help="activation width D")
    p.add_argument("--shared", type=int, default=192)
    p.add_argument("--changed", type=int, default=16)
    p.add_argument("--new", type=int, default=24)
    p.add_argument("--lost", type=int, default=24)
    p.add_argument("--docs", type=int, default=300, help="documents per corpus")
    p.add_argument("--doc-len", type=int, default=100)
    p.add_argument("--new-rate", type=float, default=0.3)
    p.add_argument("--noise", type=float, default=0.03)
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=4, help="SAE k and base directions/token")
    p.add_argument("--epochs", type=float, default=20.0)
    p.add_argument("--replicates", type=int, default=2)
    p.add_argument("--n-bootstrap", type=int, default=50)
    p.add_argument("--cos", type=float, default=0.9, help="'represents' threshold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    return p.parse_args()


def run(args: argparse.Namespace, root: Path) -> None:
    sizes = Sizes(
        args.d,
        {k: getattr(args, k) for k in KINDS},
        args.docs,
        args.doc_len,
        args.k,
        args.new_rate,
        args.noise,
    )
    rng = np.random.default_rng(args.seed)
    truth = make_truth(sizes, rng)
    acts = write_caches(root, truth, sizes, rng)
    log.info("caches written under %s", root / "acts")
    sae_cfg = SAEConfig(
        expansion=args.expansion,
        k=args.k,
        epochs=args.epochs,
        batch_size=1024,
        checkpoint_every=0,
    )
    cmp_cfg = CompareConfig(n_bootstrap=args.n_bootstrap, replicates=args.replicates)
    r, seed = args.replicates, args.seed
    saes = {
        "base": train_replicates(acts["base"], sae_cfg, seed, "base", r, root / "base"),
        "finetuned": train_replicates(
            acts["finetuned"], sae_cfg, seed, "finetuned", r, root / "finetuned"
        ),
        # The control's fine-tuned SAEs: base data, the fine-tuned init seeds.
        "control": train_replicates(
            acts["control"], sae_cfg, seed, "finetuned", r, root / "control"
        ),
    }
    outs = compare(
        saes["base"], saes["finetuned"], acts, "finetuned", cmp_cfg, seed, root / "cmp"
    )
    ctrl = compare(
        saes["base"], saes["control"], acts, "control", cmp_cfg, seed, root / "ctrl"
    )

    near = {m: nearest(saes[m][0], truth) for m in ("base", "finetuned")}
    m = {name: len(n.cos) for name, n in near.items()}
    results = {
        method: {
            kind: score(mask, near[model], truth, kind, args.cos)
            for kind, (mask, model) in by_kind.items()
        }
        for method, by_kind in flags(outs, m["finetuned"], m["base"]).items()
    }
    summary = json.loads(Path(outs["summary"]).read_text())
    ctrl_summary = json.loads(Path(ctrl["summary"]).read_text())
    cc_cfg = CrosscoderConfig(expansion=args.expansion, k=2 * args.k)
    cfgs = (sae_cfg, cc_cfg, cmp_cfg)
    base_ft = {"base": saes["base"][0], "finetuned": saes["finetuned"][0]}
    cc = crosscoders(acts, "finetuned", base_ft, outs, cfgs, seed, root / "cc")
    results[CROSSCODER] = crosscoder_scores(cc, truth, args.cos)
    base_ctrl = {"base": saes["base"][0], "finetuned": saes["control"][0]}
    cc_ctrl = crosscoders(
        acts, "control", base_ctrl, ctrl, cfgs, seed, root / "cc_ctrl"
    )

    print(
        f"\nPlanted truth: D={sizes.d}, directions {sizes.n_dirs}, "
        f"{sizes.docs}x{sizes.doc_len} tokens per corpus; SAEs M={m['base']} "
        f"k={args.k}, {args.epochs:g} epochs, {r} replicates; "
        f"'represents' = decoder cosine >= {args.cos}"
    )
    for model, n in near.items():
        print(f"  {model} r0 represents: {coverage(n, truth, args.cos)}")
    print(f"  {floor_line(summary)}")
    print(f"  {counts_line(summary)}")
    print(f"  control {floor_line(ctrl_summary)}")
    print(f"  control {counts_line(ctrl_summary)}")
    print()
    print(table(results))
    print()
    print(nearest_line(results[SAEFLOW]))
    print(control_line(ctrl_summary, m["finetuned"]))
    for name, lat in (("crosscoder", cc), ("control crosscoder", cc_ctrl)):
        print(cc_line(name, lat))


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    args = parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="diffing_truth_") as tmp:
            run(args, Path(tmp))
    log.info("done in %.1f s", time.perf_counter() - t0)


if __name__ == "__main__":
    main()
