"""The seed floor: how far two SAEs of the *same* model agree, and the effect of
fine-tuning beyond it.

Two SAEs trained on the same activations from different seeds share only part
of their features (Paulo & Belrose 2025, arXiv 2501.16615), so a base vs
fine-tuned overlap means something only beside the same overlap for two seeds
of one model. With R replicates per model (each from its own init seed, see
`saeflow.workflow.config.sae_init_seed`), every pair of SAEs of one layer is
matched by decoder cosine the way `compare_layer` matches base and fine-tuned
(one-to-one assignment, threshold = `null_quantile` of a random-feature null for
the pair's row SAE):

* same-model pairs (base r_i, base r_j) and (fine-tuned r_i, fine-tuned r_j),
  i < j, rows = r_i;
* cross-model pairs (fine-tuned r_j, base r_i), rows = fine-tuned.

All SAEs start from independent inits, so both kinds of pair are compared
under the same relation and no shared start inflates either.

Overlap counts only features that fire on the compared text: dead latents
match nothing and would pull every overlap down alike, hiding the effect.

The same pairs give the floor of *changed*: between two seeds of one model a
matched feature's mean activation often moves 2× or more (one SAE holds it in
one clean latent, the other splits it), but its domain share, domain mean /
(domain + general mean), moves little; `changed_floor` is the `null_quantile`
of that move over same-model matched pairs.

Fine-tuning effect = mean same-model overlap (the two models' floors averaged)
minus mean cross-model overlap. Its interval counts the seed as well as the
features: each pair's overlap varies by a between-seed variance σ², estimated
from the spread of pairs of one kind around their mean (pooled over kinds with
two or more pairs, less the binomial feature part, floored at 0), plus its own
binomial feature variance; the interval is effect ± t(df) · se with df the
pooled degrees of freedom. Pairs that share a replicate are correlated, which
this treats as independent: with R = 2 (4 cross pairs, df 3) the t quantile
(3.18) is what keeps the interval honest; more replicates narrow it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import stats

from saeflow.compare.matching import (
    Assignment,
    assign,
    cosine_blocks,
    null_sae,
    null_threshold,
)
from saeflow.sae.data import iter_rows
from saeflow.sae.model import TopKSAE
from saeflow.workflow.config import CompareConfig


class DecoderMatch(NamedTuple):
    """One pair of SAEs matched by decoder cosine, with its null."""

    found: Assignment
    """The assignment of row features to column features."""
    null: Assignment
    """The same assignment with the row SAE replaced by its null."""
    threshold: float
    """`null_quantile` of the null's scores: a pair above it is matched."""
    live: np.ndarray | None = None
    """[rows] bool: row features that fire on the compared text (None: all);
    the overlap counts only these, so dead latents do not dilute it."""

    @property
    def overlap(self) -> float:
        """Fraction of live row features matched."""
        m = self.matched if self.live is None else self.matched[self.live]
        return float(m.mean()) if len(m) else float("nan")

    @property
    def n_live(self) -> int:
        return len(self.matched) if self.live is None else int(self.live.sum())

    @property
    def matched(self) -> np.ndarray:
        """[rows] bool: assigned a partner scoring above the threshold."""
        score = np.nan_to_num(self.found.score, nan=-np.inf)
        return (self.found.partner >= 0) & (score > self.threshold)

    def matched_columns(self, n_cols: int) -> np.ndarray:
        """[n_cols] bool: column features that are some row's matched partner."""
        out = np.zeros(n_cols, bool)
        out[self.found.partner[self.matched]] = True
        return out


def match_decoders(
    rows: TopKSAE,
    cols: TopKSAE,
    null: TopKSAE,
    cfg: CompareConfig,
    live: np.ndarray | None = None,
) -> DecoderMatch:
    """Match `rows`' features to `cols`' by decoder cosine, against `null`
    (`live`: which row features fire, see DecoderMatch)."""
    dense = max(rows.shape.n_latents, cols.shape.n_latents) <= cfg.dense_max_latents

    def run(r: TopKSAE) -> Assignment:
        blocks = cosine_blocks(r.W_dec.detach(), cols.W_dec.detach(), cfg.block_size)
        return assign(
            blocks, r.shape.n_latents, cols.shape.n_latents, dense, cfg.candidates
        )

    found, against = run(rows), run(null)
    threshold = null_threshold(against, cfg.null_quantile)
    return DecoderMatch(found, against, threshold, live)


class SeedFloor(NamedTuple):
    """Every pair of one layer's SAEs, matched, and the effect beyond the floor."""

    pairs: dict[tuple[str, int, str, int], DecoderMatch]
    """(row model, row replicate, column model, column replicate) -> match."""
    summary: dict[str, Any]
    """JSON-ready: overlaps per pair and kind, effect, interval, verdict."""
    shares: dict[tuple[str, int], np.ndarray]
    """(model, replicate) -> [M] `domain_share` (empty without means)."""

    def share_moves(self, key: tuple[str, int, str, int]) -> np.ndarray:
        """|Δ domain share| of each matched pair of one SAE pair."""
        m = self.pairs[key]
        rows = np.flatnonzero(m.matched)
        a, b = self.shares[key[:2]], self.shares[key[2:]]
        return np.abs(a[rows] - b[m.found.partner[rows]])

    def changed_floor(self, quantile: float) -> dict[str, Any] | None:
        """How far a matched feature's domain share moves between two seeds of
        one model: the `quantile` of |Δ share| over same-model matched pairs
        (NaN ones, silent on one side, left out), and the share of those pairs
        beyond it. None without same-model pairs or means."""
        same = [k for k in self.pairs if k[0] == k[2]]
        if not same or not self.shares:
            return None
        moves = np.concatenate([self.share_moves(k) for k in same])
        moves = moves[~np.isnan(moves)]
        threshold = float(np.quantile(moves, quantile))
        return {
            "share_threshold": threshold,
            "quantile": quantile,
            "same_model_matched_pairs": len(moves),
            "same_model_rate_beyond": float((moves > threshold).mean()),
        }

    def replicates_matching(self, model: str, n_latents: int, other: str) -> np.ndarray:
        """[M] how many replicates of `other` (other replicates, when `other` is
        `model`: its stability) match each feature of `model`'s replicate 0."""
        count = np.zeros(n_latents, np.int64)
        for (rm, ri, cm, ci), m in self.pairs.items():
            if rm == model and ri == 0 and cm == other:
                count += m.matched
            elif cm == model and ci == 0 and rm == other:
                count += m.matched_columns(n_latents)
        return count


def seed_floor(
    base: list[TopKSAE],
    finetuned: list[TopKSAE],
    cfg: CompareConfig,
    seed: int,
    first_null: TopKSAE | None = None,
    means: dict[tuple[str, int], dict[str, np.ndarray]] | None = None,
) -> SeedFloor:
    """Match every pair of replicates (see module doc).

    base, finetuned: the replicates, replicate 0 first. `first_null` replaces
    the null of fine-tuned replicate 0 (the one `compare_layer` reports).
    means: (model, replicate) -> `latent_means` on the compared text; with it
    overlaps count only latents that fire, and the floor of `changed` is known.
    """
    saes = {"base": base, "finetuned": finetuned}
    keys = [
        (model, i, model, j)
        for model, reps in saes.items()
        for i in range(len(reps))
        for j in range(i + 1, len(reps))
    ] + [
        ("finetuned", j, "base", i)
        for j in range(len(finetuned))
        for i in range(len(base))
    ]
    # One null per SAE that is a pair's rows (every SAE but the last replicate
    # of the base model), drawn only when needed.
    nulls = {} if first_null is None else {("finetuned", 0): first_null}
    for model, r, _, _ in keys:
        if (model, r) not in nulls:
            null_seed = seed * 1000 + 100 * (model == "finetuned") + r
            nulls[model, r] = null_sae(saes[model][r], null_seed)
    shares = {key: domain_share(m) for key, m in (means or {}).items()}
    pairs = {
        key: match_decoders(
            saes[key[0]][key[1]],
            saes[key[2]][key[3]],
            nulls[key[0], key[1]],
            cfg,
            ~np.isnan(shares[key[:2]]) if shares else None,
        )
        for key in keys
    }
    return SeedFloor(pairs, floor_summary(pairs, cfg.ci), shares)


@torch.no_grad()
def latent_means(
    sae: TopKSAE,
    caches: dict[str, str | Path],
    batch_size: int,
    max_rows: int | None,
) -> dict[str, np.ndarray]:
    """corpus -> [M] mean activation of every latent over the first `max_rows`
    rows of that corpus' cache (all rows when None)."""
    out = {}
    for corpus, path in caches.items():
        total = torch.zeros(sae.shape.n_latents, dtype=torch.float64)
        seen = 0
        for x in iter_rows([path], batch_size):
            x = x[: None if max_rows is None else max_rows - seen]
            code = sae.encode(x.to(sae.W_dec.device))
            flat = code.vals.reshape(-1).double().cpu()
            total.index_add_(0, code.idx.reshape(-1).cpu(), flat)
            seen += len(x)
            if max_rows is not None and seen >= max_rows:
                break
        out[corpus] = (total / max(seen, 1)).numpy()
    return out


def domain_share(means: dict[str, np.ndarray]) -> np.ndarray:
    """[M] fraction of a latent's mean activity that is on domain text (NaN for a
    latent silent on both): unchanged when two SAEs share a feature's activity
    out differently, which scales both corpora's means alike."""
    dom, gen = means["domain"], means["general"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dom + gen > 0, dom / (dom + gen), np.nan)


def _kind(key: tuple[str, int, str, int]) -> str:
    return f"same_{key[0]}" if key[0] == key[2] else "cross"


def floor_summary(
    pairs: dict[tuple[str, int, str, int], DecoderMatch], ci: float
) -> dict[str, Any]:
    """Overlaps per pair and kind, the fine-tuning effect and its interval."""
    overlap = {key: m.overlap for key, m in pairs.items()}
    n_rows = {key: max(m.n_live, 1) for key, m in pairs.items()}
    kinds: dict[str, list[tuple[str, int, str, int]]] = {}
    for key in pairs:
        kinds.setdefault(_kind(key), []).append(key)
    mean = {k: float(np.mean([overlap[p] for p in ps])) for k, ps in kinds.items()}
    out: dict[str, Any] = {
        "init": "independent: every SAE from its own init seed",
        "pairs": [
            {
                "rows": f"{key[0]}/r{key[1]}",
                "columns": f"{key[2]}/r{key[3]}",
                "kind": _kind(key),
                "overlap": overlap[key],
                "live_features": pairs[key].n_live,
                "threshold": pairs[key].threshold,
            }
            for key in pairs
        ],
        "same_model_overlap": {m: mean.get(f"same_{m}") for m in ("base", "finetuned")},
        "cross_model_overlap": mean["cross"],
    }
    same = [k for k in ("same_base", "same_finetuned") if k in kinds]
    if not same:
        return out | {
            "effect": None,
            "effect_ci": None,
            "beyond_floor": None,
            "verdict": "no seed floor (compare.replicates = 1): the overlap cannot "
            "be told apart from SAE seed noise",
        }
    # Weights of each pair's overlap in the effect (same kinds averaged equally).
    weight = {p: 1.0 / (len(same) * len(kinds[k])) for k in same for p in kinds[k]}
    weight |= {p: -1.0 / len(kinds["cross"]) for p in kinds["cross"]}
    effect = sum(w * overlap[p] for p, w in weight.items())
    feature_var = {p: overlap[p] * (1 - overlap[p]) / n_rows[p] for p in pairs}
    ss = df = 0.0
    for ps in kinds.values():
        if len(ps) > 1:
            values = np.array([overlap[p] for p in ps])
            ss += float(((values - values.mean()) ** 2).sum())
            df += len(ps) - 1
    seed_var = (
        max(ss / df - float(np.mean(list(feature_var.values()))), 0.0) if df else 0.0
    )
    se = float(
        np.sqrt(sum(w**2 * (seed_var + feature_var[p]) for p, w in weight.items()))
    )
    t = float(stats.t.ppf((1 + ci) / 2, max(df, 1)))
    lo, hi = effect - t * se, effect + t * se
    beyond = lo > 0
    if beyond:
        reading = "the models share fewer features than two seeds of one model"
    elif hi < 0:
        reading = (
            "the models share MORE features than two seeds of one model (a shared "
            "start or shared data order between the models' SAEs would do this)"
        )
    else:
        reading = "within the seed floor, not distinguishable from SAE seed noise"
    return out | {
        "effect": effect,
        "effect_ci": [lo, hi],
        "effect_se": se,
        "seed_sd_per_pair": float(np.sqrt(seed_var)),
        "df": df,
        "beyond_floor": beyond,
        "verdict": f"effect {effect:+.3f} [{lo:+.3f}, {hi:+.3f}]: {reading}",
    }
