"""What a layer's crosscoder says fine-tuning did, checked three ways.

* **Classes by relative decoder norm** (Lindsey et al. 2024): r_j = ‖d_ft‖ /
  (‖d_base‖ + ‖d_ft‖) of latent j's two decoder halves, in the models' scaled
  units; base-only below `base_only_max`, fine-tuned-only above
  `finetuned_only_min`, shared between.
* **Latent Scaling on the exclusive ones** (Minder et al. 2025): for a
  fine-tuned-only latent, d = its fine-tuned half and f_j its activation; β is
  fitted to each model's crosscoder reconstruction (no bias) and to each
  model's reconstruction error plus the latent's own term for that model
  (f_j d_half). ν = β_base / β_ft (mirror for base-only). An exclusive latent
  with ν at or above `nu_error_max` (complete shrinkage: the other model
  carries it in what the crosscoder misses) or `nu_reconstruction_max` (latent
  decoupling: the other model's reconstruction carries it through other
  latents) is an *artifact*, not an exclusive concept.
* **A second seed**: a latent is stable when a crosscoder from another seed has
  a matched latent (decoder cosine over both halves beyond a random null).

Finally the agreement with the separately trained SAEs' matching: how many
stable new (lost) SAE features have a stable, robust fine-tuned-only
(base-only) latent with a decoder cosine of at least `agreement_cosine` on the
same model's half, and the reverse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from saeflow.compare.latent_scaling import TARGETS, ScalingSums
from saeflow.compare.matching import null_sae
from saeflow.compare.seed_floor import match_decoders
from saeflow.crosscoder.data import PairedActivationSource
from saeflow.sae.model import TopKSAE
from saeflow.workflow.config import CompareConfig, CrosscoderConfig

MODELS = ("base", "finetuned")


class Halves(NamedTuple):
    """A crosscoder's decoder split per model, in its input's units."""

    base: torch.Tensor
    """[M, D] base half."""
    finetuned: torch.Tensor
    """[M, D] fine-tuned half."""

    @classmethod
    def of(cls, cc: TopKSAE, model_dim: int) -> Halves:
        w = (cc.W_dec / cc.scale).detach().float()
        return cls(w[:, :model_dim], w[:, model_dim:])

    def relative_norm(self) -> np.ndarray:
        """[M] ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖)."""
        nb, nf = self.base.norm(dim=1), self.finetuned.norm(dim=1)
        return (nf / (nb + nf).clamp_min(1e-12)).cpu().numpy()


def classify(relative_norm: np.ndarray, cfg: CrosscoderConfig) -> np.ndarray:
    """base_only / shared / finetuned_only per latent."""
    return np.select(
        [relative_norm < cfg.base_only_max, relative_norm > cfg.finetuned_only_min],
        ["base_only", "finetuned_only"],
        "shared",
    )


@torch.no_grad()
def crosscoder_scaling(
    cc: TopKSAE,
    source: PairedActivationSource,
    owner_finetuned: np.ndarray,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """Latent Scaling of every latent against the model it does not claim.

    owner_finetuned: [M] bool, the latent's own model is the fine-tuned one.
    Returns "nu_reconstruction", "nu_error" ([M], NaN where it never fires) and
    "n_tokens" ([M] tokens on which it fired, over every row of the caches).
    """
    device = cc.W_dec.device
    dm = source.model_dim
    halves = Halves.of(cc, dm)
    own_ft = torch.from_numpy(owner_finetuned).to(device)[:, None]
    d_own = torch.where(own_ft, halves.finetuned, halves.base)
    d_other = torch.where(own_ft, halves.base, halves.finetuned)
    cut = {"base": slice(0, dm), "finetuned": slice(dm, 2 * dm)}
    bias = cc.b_dec / cc.scale
    keys = [(m, t) for m in MODELS for t in TARGETS]
    sums = ScalingSums(cc.shape.n_latents, device, keys)
    for x in source.all_batches(batch_size):
        x = x.to(device)
        code = cc.encode(x)
        recon = cc.decode(code)
        targets = {}
        for m, c in cut.items():
            targets[m, "reconstruction"] = recon[:, c] - bias[c]
            targets[m, "error"] = x[:, c] - recon[:, c]
        sums.add(code.vals.float(), code.idx, d_own, targets)
    fired = sums.count > 0
    own_sq = d_own.double().pow(2).sum(1)
    denom = (own_sq * sums.f2).clamp_min(1e-30)

    def beta(model: str, target: str) -> torch.Tensor:
        return torch.where(fired, sums.num[model, target] / denom, torch.nan)

    # The latent's own term f_j d_half added back to each model's error target,
    # in closed form: Σ f (f d_half)·d_own / (‖d_own‖² Σ f²) = d_half·d_own/‖d_own‖².
    own_term = 1.0
    other_term = (d_own.double() * d_other.double()).sum(1) / own_sq.clamp_min(1e-30)
    is_ft = own_ft[:, 0]
    out: dict[str, np.ndarray] = {"n_tokens": sums.count.cpu().numpy()}
    for target in TARGETS:
        b_own = torch.where(is_ft, beta("finetuned", target), beta("base", target))
        b_other = torch.where(is_ft, beta("base", target), beta("finetuned", target))
        if target == "error":
            b_own, b_other = b_own + own_term, b_other + other_term
        out[f"nu_{target}"] = (b_other / b_own).cpu().numpy()
    return out


def stable_latents(
    crosscoders: list[TopKSAE], compare: CompareConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """[M] bool: the first crosscoder's latent is matched in every other one;
    [M] float: its lowest matched decoder cosine over them (NaN with one seed)."""
    first = crosscoders[0]
    m = first.shape.n_latents
    stable = np.ones(m, bool)
    cosine = np.full(m, np.inf)
    for i, other in enumerate(crosscoders[1:]):
        match = match_decoders(first, other, null_sae(first, seed + i), compare)
        stable &= match.matched
        cosine = np.fmin(cosine, np.nan_to_num(match.found.score, nan=-1.0))
    if len(crosscoders) == 1:
        cosine[:] = np.nan
    return stable, cosine


def best_cosine(
    rows: torch.Tensor, cols: torch.Tensor, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For each row direction, the column with the highest cosine and that cosine
    (rows [R, D], cols [C, D]); computed by row blocks, memory O(block · C)."""
    if len(rows) == 0 or len(cols) == 0:
        return np.full(len(rows), -1, np.int64), np.full(len(rows), np.nan)
    b = F.normalize(cols.float(), dim=1)
    best_idx, best_val = [], []
    for r0 in range(0, len(rows), block):
        sims = F.normalize(rows[r0 : r0 + block].float(), dim=1) @ b.T
        v, i = sims.max(dim=1)
        best_idx.append(i.cpu().numpy())
        best_val.append(v.cpu().numpy())
    return np.concatenate(best_idx), np.concatenate(best_val).astype(np.float64)


def agreement(
    latent_dirs: torch.Tensor,
    latent_mask: np.ndarray,
    feature_dirs: torch.Tensor,
    feature_mask: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """How many selected SAE features have a selected latent at cosine ≥
    `threshold`, and how many selected latents have such a feature."""
    lat = torch.from_numpy(np.flatnonzero(latent_mask))
    feat = torch.from_numpy(np.flatnonzero(feature_mask))
    _, f_best = best_cosine(feature_dirs[feat], latent_dirs[lat])
    _, l_best = best_cosine(latent_dirs[lat], feature_dirs[feat])
    return {
        "n_features": len(feat),
        "features_with_latent": int((f_best >= threshold).sum()),
        "n_latents": len(lat),
        "latents_with_feature": int((l_best >= threshold).sum()),
    }


class CrosscoderAnalysis(NamedTuple):
    """One layer's crosscoder, latent by latent, and in numbers."""

    latents: pd.DataFrame
    """One row per latent of the first seed's crosscoder."""
    summary: dict[str, Any]
    """JSON-ready counts, FVUs and agreement."""


def analyse_crosscoder(
    crosscoders: list[TopKSAE],
    source: PairedActivationSource,
    saes: dict[str, TopKSAE],
    statuses: dict[str, pd.DataFrame],
    cfg: CrosscoderConfig,
    compare: CompareConfig,
    seed: int,
) -> CrosscoderAnalysis:
    """Classes, Latent Scaling, stability and agreement for one layer.

    saes: each model's separately trained SAE (replicate 0); statuses: "new" ->
    matches table (finetuned_feature, status), "lost" -> lost table
    (base_feature, status), from the comparison of the same layer.
    """
    cc = crosscoders[0]
    halves = Halves.of(cc, source.model_dim)
    r = halves.relative_norm()
    cls = classify(r, cfg)
    scaling = crosscoder_scaling(cc, source, r >= 0.5, compare.batch_size)
    exclusive = cls != "shared"
    artifact = exclusive & ~(
        (scaling["nu_error"] < compare.nu_error_max)
        & (scaling["nu_reconstruction"] < compare.nu_reconstruction_max)
    )
    stable, stable_cos = stable_latents(crosscoders, compare, seed)
    final = np.where(artifact, np.char.add(cls.astype(str), "_artifact"), cls)
    table = pd.DataFrame(
        {
            "latent": np.arange(len(r)),
            "relative_norm": r,
            "norm_base": halves.base.norm(dim=1).cpu().numpy(),
            "norm_finetuned": halves.finetuned.norm(dim=1).cpu().numpy(),
            "class": cls,
            "nu_reconstruction": scaling["nu_reconstruction"],
            "nu_error": scaling["nu_error"],
            "n_tokens": scaling["n_tokens"],
            "artifact": artifact,
            "final_class": final,
            "stable": stable,
            "stable_cosine": stable_cos,
        }
    )
    agree = {}
    for model, label, status_col in (
        ("finetuned", "new", "finetuned_feature"),
        ("base", "lost", "base_feature"),
    ):
        half = getattr(halves, model)
        sae_dirs = saes[model].W_dec.detach().float()
        idx, cos = best_cosine(half, sae_dirs)
        table[f"best_{model}_sae_feature"] = idx
        table[f"best_{model}_sae_cosine"] = cos
        st = statuses[label]
        feature_mask = np.zeros(len(sae_dirs), bool)
        feature_mask[st.loc[st["status"] == label, status_col].to_numpy()] = True
        exclusive_cls = f"{model}_only"
        latent_mask = (final == exclusive_cls) & stable
        agree[label] = agreement(
            half, latent_mask, sae_dirs, feature_mask, cfg.agreement_cosine
        )
    counts = table["final_class"].value_counts()
    summary = {
        "n_latents": len(table),
        "counts": {c: int(counts.get(c, 0)) for c in sorted(set(final))},
        "stable_fraction": float(stable.mean()) if len(crosscoders) > 1 else None,
        "stable_exclusive": {
            c: int(((final == c) & stable).sum())
            for c in ("finetuned_only", "base_only")
        },
        "agreement_with_sae_matching": agree,
        "thresholds": {
            "base_only_max": cfg.base_only_max,
            "finetuned_only_min": cfg.finetuned_only_min,
            "nu_error_max": compare.nu_error_max,
            "nu_reconstruction_max": compare.nu_reconstruction_max,
            "agreement_cosine": cfg.agreement_cosine,
        },
        "seeds": len(crosscoders),
    }
    return CrosscoderAnalysis(table, summary)
