"""Base vs fine-tuned SAE features, per layer and across layers.

Per layer (`compare_layer`), every fine-tuned feature gets a base partner by two
independent one-to-one assignments (saeflow.compare.matching): by decoder-direction
cosine, and by activation correlation on the same tokens of both corpora. A pair
is *matched* when its score beats the null threshold. The decoder assignment
decides the status written for everyone downstream:

* ``matched``: matched partner in the base SAE (replicate 0);
* ``changed``: matched, but its mean activation on domain text moved by at least
  `changed_fold` (either way), the bootstrap interval of the move excludes 0,
  and so does the interval of its specialization's move (a domain-specific
  change, not activity shared out differently between two SAEs); and, with
  replicates, its domain share moved more than the `null_quantile` of what it
  moves between two seeds of one model (saeflow.compare.seed_floor);
* ``matched_other_seed``: no partner in base replicate 0, but one in another
  base replicate (saeflow.compare.seed_floor): the base model has it;
* ``silent``: never fires on the compared tokens, so nothing can be said
  (decided first: a dead latent's decoder match means nothing);
* ``unstable``: matches no base replicate, but is not matched in every other
  fine-tuned replicate either: a seed's accident, not a finding;
* ``present_in_base``: stable and unmatched, but Latent Scaling
  (saeflow.compare.latent_scaling) finds its direction in the base model where
  it fires (ν at or above `nu_error_max` or `nu_reconstruction_max`);
* ``new``: stable, matches no base replicate, and absent from the base model.

Base features without a matched partner in fine-tuned replicate 0 get the mirror
statuses in `lost` (``lost``, ``unstable``, ``matched_other_seed``,
``present_in_finetuned``, ``silent``).
Activation statistics (means per corpus, specialization = domain − general mean,
and their base vs fine-tuned deltas) come with paired bootstrap intervals over
documents. Transfer FVU and the cross-layer reports are in
saeflow.compare.reports.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch.nn.functional as F
from scipy.stats import binom

from saeflow.compare.coactivation import (
    Codes,
    DocBootstrap,
    align_tokens,
    auto_max_tokens,
    concat_codes,
    correlation_blocks,
    encode_rows,
    interval,
    moments,
    subsample_docs,
)
from saeflow.compare.latent_scaling import LatentScaling, latent_scaling
from saeflow.compare.matching import (
    Assignment,
    PairValues,
    assign,
    bootstrap_fraction,
    init_similarity,
    null_p_values,
    null_sae,
    null_threshold,
)
from saeflow.compare.seed_floor import SeedFloor, seed_floor
from saeflow.sae.model import TopKSAE
from saeflow.workflow.config import CompareConfig

STATUSES = (
    "matched",
    "changed",
    "matched_other_seed",
    "silent",
    "unstable",
    "present_in_base",
    "new",
)
LOST_STATUSES = (
    "matched_other_seed",
    "silent",
    "unstable",
    "present_in_finetuned",
    "lost",
)

log = logging.getLogger(__name__)


class LayerComparison(NamedTuple):
    """Everything `compare_layer` finds for one layer."""

    matches: pd.DataFrame
    """One row per fine-tuned feature: partner, scores, status, statistics."""
    lost: pd.DataFrame
    """One row per base feature without a matched fine-tuned partner."""
    top: pd.DataFrame
    """The `top_n` fine-tuned features by specialization, compared."""
    summary: dict[str, Any]
    """JSON-ready numbers: overlaps, thresholds, counts, token alignment."""


class _Clock:
    """Logs the seconds each phase of a layer comparison took."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self, what: str, *args: Any) -> None:
        now = time.perf_counter()
        log.info(f"{what}: %.1f s", *args, now - self.last)
        self.last = now


class _Tokens(NamedTuple):
    codes: dict[str, Codes]  # "base" | "finetuned" | "null" -> codes, corpora stacked
    corpus_rows: dict[str, slice]  # corpus -> its rows in the stacked codes
    docs: dict[str, np.ndarray]  # corpus -> document of each of its rows
    alignment: dict[str, dict[str, Any]]  # corpus -> alignment report
    # corpus -> (base cache, its rows, fine-tuned cache, its rows), same tokens
    files: dict[str, tuple[str | Path, np.ndarray, str | Path, np.ndarray]]


def compare_layer(
    sae_base: TopKSAE,
    sae_finetuned: TopKSAE,
    null: TopKSAE,
    base_acts: dict[str, str | Path],
    finetuned_acts: dict[str, str | Path],
    cfg: CompareConfig,
    seed: int,
    device: str = "cpu",
    floor: SeedFloor | None = None,
) -> LayerComparison:
    """Compare one layer's SAEs (acts: corpus -> cache; "domain" and "general").

    `floor`: every replicate pair matched (`seed_floor`, with `null` as the
    fine-tuned replicate 0's null); without it the two SAEs alone, no floor.
    """
    rng = np.random.default_rng(seed)
    if floor is None:
        floor = seed_floor([sae_base], [sae_finetuned], cfg, seed, first_null=null)
    clock = _Clock()
    tokens = _read_tokens(
        sae_base, sae_finetuned, null, base_acts, finetuned_acts, cfg, rng
    )
    clock.lap("encoded %d aligned tokens", len(tokens.codes["base"].mat.indptr) - 1)
    mats = {name: c.mat for name, c in tokens.codes.items()}
    mom = {name: moments(m) for name, m in mats.items()}
    dense = max(sae_base.shape.n_latents, sae_finetuned.shape.n_latents) <= (
        cfg.dense_max_latents
    )
    mf, mb = sae_finetuned.shape.n_latents, sae_base.shape.n_latents

    method = cfg.correlation
    if method == "auto":
        method = "gemm" if device.startswith("cuda") else "scatter"

    def by_activation(rows: str, observers=()) -> Assignment:
        blocks = correlation_blocks(
            tokens.codes[rows],
            tokens.codes["base"],
            mom[rows],
            mom["base"],
            method,
            device,
        )
        return assign(blocks, mf, mb, dense, cfg.candidates, observers)

    # Rows: the fine-tuned SAE's features, or the null's in their place (random
    # features reading the fine-tuned activations); columns: the base SAE's.
    first = floor.pairs["finetuned", 0, "base", 0]
    dec, dec_null = first.found, first.null
    has = dec.partner >= 0
    dec_pairs = PairValues(np.flatnonzero(has), dec.partner[has])
    act = by_activation("finetuned", [dec_pairs])
    act_null = by_activation("null")
    clock.lap("activation assignments (%s)", method)
    thresholds = {
        "decoder": first.threshold,
        "activation": null_threshold(act_null, cfg.null_quantile),
    }
    scaling = {
        "finetuned": latent_scaling(
            sae_finetuned,
            sae_base,
            [(f, fr, b, br) for b, br, f, fr in tokens.files.values()],
            cfg.batch_size,
        ),
        "base": latent_scaling(
            sae_base, sae_finetuned, list(tokens.files.values()), cfg.batch_size
        ),
    }
    clock.lap("latent scaling")
    stats = _corpus_stats(tokens, mats, cfg, rng)
    clock.lap("document bootstrap (%d resamples)", cfg.n_bootstrap)
    matches = _matches_table(
        sae_base,
        sae_finetuned,
        dec,
        act,
        dec_null,
        dec_pairs,
        thresholds,
        stats,
        mom,
        cfg,
    )
    changed_floor = _changed_beyond_floor(matches, floor, cfg)
    _add_seed_columns(matches, floor, scaling["finetuned"], "finetuned", cfg)
    lost = _lost_table(matches, act, stats, mom["base"], mb)
    _add_seed_columns(lost, floor, scaling["base"], "base", cfg)
    top = matches.sort_values(
        "specialization_finetuned", ascending=False, kind="stable"
    )
    top = top.head(cfg.top_n).reset_index(drop=True)
    top.insert(0, "rank", range(1, len(top) + 1))
    summary = _layer_summary(
        matches,
        lost,
        (dec, act),
        (dec_null, act_null),
        thresholds,
        tokens,
        mom,
        cfg,
        rng,
    )
    summary["activation"]["method"] = method
    summary["seed_floor"] = floor.summary
    summary["changed_floor"] = changed_floor
    summary["latent_scaling"] = _scaling_summary(matches, lost, cfg)
    return LayerComparison(matches, lost, top, summary)


SHARED_INIT_COS = 0.3
"""Median cosine with the training init above which an SAE still carries it
(an SAE from another start sits near 1/sqrt(D))."""


def choose_null(
    sae_base: TopKSAE, sae_finetuned: TopKSAE, init_seeds: tuple[int, int], seed: int
) -> tuple[TopKSAE, dict[str, Any]]:
    """The null SAE for one layer, and what it is.

    init_seeds: the seeds the base and the fine-tuned SAE were initialised from.
    The workflow gives every SAE its own (independent starts), and the null is
    random features with the fine-tuned SAE's statistics. Where both came from
    one seed and still resemble that start (median row cosine above
    SHARED_INIT_COS, as after short training), a plain random null would count
    the shared start as shared features; the null is then the start moved by
    random displacements (see `null_sae`).
    """
    info: dict[str, Any] = {"init_seeds": list(init_seeds)}
    shared = False
    if init_seeds[0] == init_seeds[1]:
        init = TopKSAE(sae_finetuned.shape, seed=init_seeds[0])
        sim = {
            "base": init_similarity(sae_base, init),
            "finetuned": init_similarity(sae_finetuned, init),
        }
        shared = min(sim.values()) > SHARED_INIT_COS
        info["median_cosine_to_init"] = sim
    null = null_sae(sae_finetuned, seed, init if shared else None)
    info |= {
        "kind": "shared-init displacement" if shared else "random features",
        "shared_init": shared,
    }
    return null.to(sae_finetuned.W_dec.device), info


def _read_tokens(
    sae_base, sae_finetuned, null, base_acts, finetuned_acts, cfg, rng
) -> _Tokens:
    parts: dict[str, list[Codes]] = {"base": [], "null": [], "finetuned": []}
    corpus_rows, docs, reports, files = {}, {}, {}, {}
    start = 0
    max_tokens = cfg.max_tokens
    if max_tokens is None:  # all aligned tokens, as far as their codes fit memory
        k = max(sae_base.shape.k, sae_finetuned.shape.k)
        max_tokens = auto_max_tokens(k, len(base_acts))
    for corpus, base_path in base_acts.items():
        al = align_tokens(base_path, finetuned_acts[corpus], cfg.min_aligned_fraction)
        al = subsample_docs(al, max_tokens, rng)
        (base,) = encode_rows([sae_base], base_path, al.base_rows, cfg.batch_size)
        ft, nul = encode_rows(
            [sae_finetuned, null],
            finetuned_acts[corpus],
            al.finetuned_rows,
            cfg.batch_size,
        )
        for name, codes in (("base", base), ("null", nul), ("finetuned", ft)):
            parts[name].append(codes)
        corpus_rows[corpus] = slice(start, start + len(al.doc))
        docs[corpus] = al.doc
        reports[corpus] = al.report
        files[corpus] = (
            base_path,
            al.base_rows,
            finetuned_acts[corpus],
            al.finetuned_rows,
        )
        start += len(al.doc)
    codes = {name: concat_codes(p) for name, p in parts.items()}
    return _Tokens(codes, corpus_rows, docs, reports, files)


class _Stats(NamedTuple):
    mean: dict[tuple[str, str], np.ndarray]  # (model, corpus) -> [M] mean activation
    boot: dict[tuple[str, str], np.ndarray]  # (model, corpus) -> [B, M] resampled


def _corpus_stats(tokens: _Tokens, mats, cfg, rng) -> _Stats:
    mean, boot = {}, {}
    for corpus, rows in tokens.corpus_rows.items():
        resample = DocBootstrap(tokens.docs[corpus], cfg.n_bootstrap, rng)
        for model in ("base", "finetuned"):
            mean[model, corpus], boot[model, corpus] = resample.means(mats[model][rows])
    return _Stats(mean, boot)


def _partner_values(values: np.ndarray, partner: np.ndarray) -> np.ndarray:
    """values[..., partner] with NaN where partner is -1 (works on [M] and [B, M])."""
    out = values[..., np.maximum(partner, 0)].astype(np.float64)
    out[..., partner < 0] = np.nan
    return out


def _matches_table(
    sae_base, sae_finetuned, dec, act, dec_null, dec_pairs, thresholds, stats, mom, cfg
) -> pd.DataFrame:
    mf = sae_finetuned.shape.n_latents
    partner = dec.partner
    matched = (partner >= 0) & (
        np.nan_to_num(dec.score, nan=-np.inf) > thresholds["decoder"]
    )
    corr = np.full(mf, np.nan, np.float32)
    corr[dec_pairs.rows] = dec_pairs.values
    act_matched = (act.partner >= 0) & (
        np.nan_to_num(act.score, nan=-np.inf) > thresholds["activation"]
    )
    wf = F.normalize(sae_finetuned.W_dec.detach().cpu().float(), dim=1)
    wb = F.normalize(sae_base.W_dec.detach().cpu().float(), dim=1)
    act_cos = np.full(mf, np.nan, np.float32)
    ha = act.partner >= 0
    act_cos[ha] = (wf[ha] * wb[act.partner[ha]]).sum(1).numpy()
    table = {
        "finetuned_feature": np.arange(mf),
        "base_feature": partner,
        "decoder_cosine": dec.score,
        "activation_correlation": corr,
        "matched": matched,
        "status": "",
        "decoder_null_p": null_p_values(dec.score, dec_null),
        "activation_partner": act.partner,
        "activation_partner_correlation": act.score,
        "activation_partner_cosine": act_cos,
        "activation_matched": act_matched,
        "methods_agree": act.partner == partner,
        "finetuned_frac_active": mom["finetuned"].frac_active,
        "base_frac_active": _partner_values(mom["base"].frac_active, partner),
    }
    m, bt = stats.mean, stats.boot
    for corpus in ("domain", "general"):
        table[f"{corpus}_mean_finetuned"] = m["finetuned", corpus]
        table[f"{corpus}_mean_base"] = _partner_values(m["base", corpus], partner)
    fd, bd = bt["finetuned", "domain"], _partner_values(bt["base", "domain"], partner)
    fg, bg = bt["finetuned", "general"], _partner_values(bt["base", "general"], partner)
    spec_f = m["finetuned", "domain"] - m["finetuned", "general"]
    spec_b = table["domain_mean_base"] - table["general_mean_base"]
    table["domain_delta"] = table["domain_mean_finetuned"] - table["domain_mean_base"]
    table["domain_delta_lo"], table["domain_delta_hi"] = interval(fd - bd, cfg.ci)
    table["specialization_finetuned"] = spec_f
    table["specialization_finetuned_lo"], table["specialization_finetuned_hi"] = (
        interval(fd - fg, cfg.ci)
    )
    table["specialization_base"] = spec_b
    table["specialization_base_lo"], table["specialization_base_hi"] = interval(
        bd - bg, cfg.ci
    )
    table["specialization_delta"] = spec_f - spec_b
    table["specialization_delta_lo"], table["specialization_delta_hi"] = interval(
        (fd - fg) - (bd - bg), cfg.ci
    )
    df = pd.DataFrame(table)
    df["status"] = _status(df, cfg.changed_fold)
    return df


def _status(df: pd.DataFrame, fold: float) -> np.ndarray:
    """changed / matched, and "unmatched" until `_add_seed_columns` decides."""
    largest = np.fmax(df["domain_mean_finetuned"], df["domain_mean_base"])
    moved = df["domain_delta"].abs() >= (1.0 - 1.0 / fold) * largest
    excludes_zero = (df["domain_delta_lo"] > 0) | (df["domain_delta_hi"] < 0)
    # Two SAEs of one model share a feature's activity out differently (one
    # clean latent vs a split, blurred one), which moves its mean on BOTH
    # corpora; a change fine-tuning made for the domain moves its
    # specialization too (bench/diffing_truth.py: 3 of 19 changed were such
    # splits, and 1-6 in the identical-data control, before this test).
    specific = (df["specialization_delta_lo"] > 0) | (df["specialization_delta_hi"] < 0)
    changed = df["matched"] & moved & excludes_zero & specific & (largest > 0)
    return np.where(
        ~df["matched"], "unmatched", np.where(changed, "changed", "matched")
    )


def _changed_beyond_floor(
    df: pd.DataFrame, floor: SeedFloor, cfg: CompareConfig
) -> dict[str, Any] | None:
    """Keep `changed` only where the feature's domain share moved more than it
    moves between two seeds of one model (SeedFloor.changed_floor); in place.
    Adds `domain_share_move` (NaN without replicate means)."""
    df["domain_share_move"] = np.nan
    found = floor.changed_floor(cfg.null_quantile)
    if found is None:
        return None
    key = ("finetuned", 0, "base", 0)
    rows = np.flatnonzero(floor.pairs[key].matched)
    df.loc[rows, "domain_share_move"] = floor.share_moves(key)
    beyond = df["domain_share_move"] > found["share_threshold"]
    was = df["status"] == "changed"
    df.loc[was & ~beyond, "status"] = "matched"
    found["n_changed_before_floor"] = int(was.sum())
    n, rate = int(df["matched"].sum()), found["same_model_rate_beyond"]
    found["expected_by_seed_noise"] = rate * n
    # More changed features than this would be unlikely (2.5 %) from seed noise.
    found["expected_by_seed_noise_hi"] = float(binom.ppf(0.975, n, rate))
    return found


def _add_seed_columns(
    df: pd.DataFrame,
    floor: SeedFloor,
    scaling: LatentScaling,
    model: str,
    cfg: CompareConfig,
) -> None:
    """Replicate matches, Latent Scaling and the final status of each unmatched
    feature, in place; `df` holds features of `model`'s replicate 0 (column
    `{model}_feature`), the other model being the one they are compared with."""
    other = "base" if model == "finetuned" else "finetuned"
    feats = df[f"{model}_feature"].to_numpy()
    m = len(scaling.n_tokens)
    stable_in = floor.replicates_matching(model, m, model)[feats]
    other_in = floor.replicates_matching(model, m, other)[feats]
    n_own = 1 + max((k[3] for k in floor.pairs if k[0] == k[2] == model), default=0)
    df[f"{model}_replicates_matched"] = stable_in
    df[f"{other}_replicates_matched"] = other_in
    df["ls_n_tokens"] = scaling.n_tokens[feats]
    for target in ("reconstruction", "error"):
        df[f"ls_beta_{model}_{target}"] = scaling.beta_own[target][feats]
        df[f"ls_beta_{other}_{target}"] = scaling.beta_other[target][feats]
        df[f"nu_{target}"] = scaling.nu[target][feats]
    absent = (df["nu_error"] < cfg.nu_error_max) & (
        df["nu_reconstruction"] < cfg.nu_reconstruction_max
    )
    verdict = np.select(
        [other_in > 0, stable_in < n_own - 1, ~absent],
        ["matched_other_seed", "unstable", f"present_in_{other}"],
        "new" if model == "finetuned" else "lost",
    )
    if "status" in df:
        verdict = np.where(df["status"] == "unmatched", verdict, df["status"])
    # A feature that never fires on the compared text says nothing either way,
    # whatever its decoder happens to match.
    df["status"] = np.where(df["ls_n_tokens"] == 0, "silent", verdict)


def _lost_table(matches, act, stats, mom_base, mb) -> pd.DataFrame:
    kept = set(matches.loc[matches["matched"], "base_feature"].tolist())
    lost = np.array([b for b in range(mb) if b not in kept], np.int64)
    # Who (if anyone) each base feature was assigned to, even below threshold.
    by_base = matches[matches["base_feature"] >= 0].set_index("base_feature")
    act_owner = np.full(mb, -1, np.int64)
    act_score = np.full(mb, np.nan, np.float32)
    act_ok = np.zeros(mb, bool)
    has = act.partner >= 0
    act_owner[act.partner[has]] = np.flatnonzero(has)
    act_score[act.partner[has]] = act.score[has]
    act_ok[act.partner[has]] = matches["activation_matched"].to_numpy()[has]
    m = stats.mean
    spec = m["base", "domain"] - m["base", "general"]
    return pd.DataFrame(
        {
            "base_feature": lost,
            "finetuned_feature": by_base["finetuned_feature"]
            .reindex(lost)
            .fillna(-1)
            .astype(np.int64)
            .to_numpy(),
            "decoder_cosine": by_base["decoder_cosine"].reindex(lost).to_numpy(),
            "activation_correlation": by_base["activation_correlation"]
            .reindex(lost)
            .to_numpy(),
            "activation_partner": act_owner[lost],
            "activation_partner_correlation": act_score[lost],
            "lost_by_activation": ~act_ok[lost],
            "base_frac_active": mom_base.frac_active[lost],
            "domain_mean_base": m["base", "domain"][lost],
            "general_mean_base": m["base", "general"][lost],
            "specialization_base": spec[lost],
        }
    )


def _layer_summary(
    matches, lost, found, nulls, thresholds, tokens, mom, cfg, rng
) -> dict[str, Any]:
    (dec, act), (dec_null, act_null) = found, nulls

    def side(a: Assignment, null: Assignment, name: str, mask: np.ndarray) -> dict:
        lo, hi = bootstrap_fraction(mask, cfg.n_bootstrap, cfg.ci, rng)
        null_scores = np.nan_to_num(null.score, nan=0.0)
        return {
            "assignment": a.method,
            "candidate_pairs": a.n_edges,
            "threshold": thresholds[name],
            "null_quantile": cfg.null_quantile,
            "null_median": float(np.median(null_scores)),
            "null_overlap": float((null_scores > thresholds[name]).mean()),
            "overlap": float(mask.mean()),
            "overlap_ci": [lo, hi],
            "n_matched": int(mask.sum()),
            "median_matched_score": float(np.nanmedian(a.score[mask]))
            if mask.any()
            else None,
        }

    dec_mask = matches["matched"].to_numpy()
    act_mask = matches["activation_matched"].to_numpy()
    counts = matches["status"].value_counts()
    lost_counts = lost["status"].value_counts()
    both = dec_mask & act_mask
    return {
        "n_latents_base": len(mom["base"].mean),
        "n_latents_finetuned": len(matches),
        "n_tokens": int(sum(s.stop - s.start for s in tokens.corpus_rows.values())),
        "token_alignment": tokens.alignment,
        "decoder": side(dec, dec_null, "decoder", dec_mask),
        "activation": side(act, act_null, "activation", act_mask),
        "methods_agree": float(matches.loc[both, "methods_agree"].mean())
        if both.any()
        else None,
        **{f"n_{status}": int(counts.get(status, 0)) for status in STATUSES},
        "n_unmatched_finetuned": int((~dec_mask).sum()),
        "n_lost": int(lost_counts.get("lost", 0)),
        **{
            f"n_lost_{status}": int(lost_counts.get(status, 0))
            for status in LOST_STATUSES
            if status != "lost"
        },
        "n_unmatched_base": len(lost),
        "n_dead_finetuned": int((matches["finetuned_frac_active"] == 0).sum()),
        "n_dead_base": int((mom["base"].frac_active == 0).sum()),
        "median_domain_delta_matched": _median(matches.loc[dec_mask, "domain_delta"]),
        "median_specialization_delta_matched": _median(
            matches.loc[dec_mask, "specialization_delta"]
        ),
    }


def _scaling_summary(
    matches: pd.DataFrame, lost: pd.DataFrame, cfg: CompareConfig
) -> dict[str, Any]:
    """Latent Scaling in numbers: ν medians by status, and the thresholds."""

    def medians(df: pd.DataFrame) -> dict[str, dict[str, float | None]]:
        return {
            status: {t: _median(group[f"nu_{t}"]) for t in ("reconstruction", "error")}
            for status, group in df.groupby("status")
        }

    return {
        "nu_error_max": cfg.nu_error_max,
        "nu_reconstruction_max": cfg.nu_reconstruction_max,
        "median_nu_finetuned_features": medians(matches),
        "median_nu_unmatched_base_features": medians(lost),
    }


def _median(s: pd.Series) -> float | None:
    return float(s.median()) if s.notna().any() else None
