"""Do the labels beat the baselines and the token-pattern floor? Paired
bootstrap intervals per scorer (`verdict`), and issue #20's bar for the default
run (`done_criteria`), each said in plain sentences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saeflow.labels.scoring import BY_QUANTILE_COLUMN, SCORERS

LABEL_KINDS = ("label", "random_label", "shuffled_label", "pattern_label")
BASELINES = ("random_label", "shuffled_label")


def _col(kind: str, scorer: str) -> str:
    """Column prefix of a scorer's results for one kind of label."""
    return scorer if kind == "label" else f"{kind}_{scorer}"


def verdict(df: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> dict:
    """Do labels beat the baselines? Per scorer: median AUROC of real, random and
    shuffled labels; per scorer and baseline, the mean paired AUROC difference
    over features with a bootstrap 95 % interval, `better` only when the interval
    lies above 0; the same against the token-pattern label (`llm_vs_pattern`,
    `llm_beats_pattern_on`). Also how many labels are distinct and why labels
    failed. `statement` says it all in plain sentences."""
    rng = np.random.default_rng(seed)
    labels = df["label"].dropna()
    out: dict = {
        "n_features": len(df),
        "n_labeled": len(labels),
        "n_failed": int(df["label"].isna().sum()),
        "n_distinct_labels": int(labels.str.lower().nunique()),
        # Of the labelled features: a labeler that says one thing for all scores 0.
        "distinct_fraction": float(labels.str.lower().nunique() / max(1, len(labels))),
        "fail_reasons": _reasons(df["fail_reason"].dropna()),
        "median_auroc": {},
        "comparisons": [],
        "llm_vs_pattern": [],
    }
    lines = [
        f"{out['n_labeled']} of {len(df)} features got a label "
        f"({out['n_distinct_labels']} distinct)."
    ]
    for scorer in SCORERS:
        out["median_auroc"][scorer] = {
            kind: _median(df, f"{_col(kind, scorer)}_auroc") for kind in LABEL_KINDS
        }
        for base in BASELINES:
            item = _compare(df, scorer, base, rng, n_boot)
            out["comparisons"].append(item)
            lines.append(item.pop("line"))
    for scorer in SCORERS:
        item = _compare(df, scorer, "pattern_label", rng, n_boot)
        out["llm_vs_pattern"].append(item)
        lines.append(item.pop("line"))
    out["llm_beats_pattern_on"] = [
        c["scorer"] for c in out["llm_vs_pattern"] if c["better"]
    ]
    beats = {
        s: all(c["better"] for c in out["comparisons"] if c["scorer"] == s)
        for s in SCORERS
    }
    out["scorers_beating_both_baselines"] = [s for s, b in beats.items() if b]
    out["labels_beat_baselines"] = bool(out["scorers_beating_both_baselines"])
    out["statement"] = " ".join(lines) + (
        ""
        if out["labels_beat_baselines"]
        else " No scorer puts these labels above both baselines: read them as "
        "unvalidated guesses, not descriptions."
    )
    out["by_quantile"], line = by_quantile(df, rng, n_boot)
    out["statement"] += line
    return out


def by_quantile(df: pd.DataFrame, rng, n_boot: int = 2000) -> tuple[list, str]:
    """A breakdown beside the verdict, not a new bar: the embedding scorer's
    paired AUROC differences (label minus random, shuffled and token-pattern
    label) when the positives are only one activation-quantile bin of the
    held-out snippets (`embedding_auroc_q100`: the top bin, against all the
    negatives). Returns the items, one per bin and baseline (`quantile`: the
    bin's upper bound), and a sentence on the top bin for the statement."""
    bins = sorted({int(m[1]) for c in df if (m := BY_QUANTILE_COLUMN.fullmatch(c))})
    items = []
    for b in bins:
        for base in (*BASELINES, "pattern_label"):
            item = _compare(df, "embedding", base, rng, n_boot, f"auroc_q{b}")
            item.pop("line")
            items.append({"quantile": b / 100, **item})
    top = [i for i in items if bins and i["quantile"] == bins[-1] / 100]
    said = [
        f"{'BETTER' if i['better'] else 'NO BETTER'} than the "
        f"{_label_name(i['baseline'])} ({i['diff_mean']:+.2f} "
        f"[{i['ci95'][0]:+.2f}, {i['ci95'][1]:+.2f}])"
        for i in top
        if "ci95" in i
    ]
    if not said:
        return items, ""
    low = bins[-2] if len(bins) > 1 else 0
    return items, (
        " Breakdown, not the bar: with only the top activation-quantile bin's "
        f"held-out snippets as positives (percentiles {low}-{bins[-1]} of the "
        "feature's activations, against all negatives), embedding labels are "
        + "; ".join(said)
        + "."
    )


def _compare(df, scorer, base, rng, n_boot, metric: str = "auroc") -> dict:
    missing = pd.Series(np.nan, index=df.index)
    a = df.get(f"{scorer}_{metric}", missing).to_numpy(float)
    b = df.get(f"{_col(base, scorer)}_{metric}", missing).to_numpy(float)
    both = ~np.isnan(a) & ~np.isnan(b)
    d = a[both] - b[both]
    item = {"scorer": scorer, "baseline": base, "n": int(both.sum()), "better": False}
    pattern = base == "pattern_label"
    name = _label_name(base) + ("" if pattern else " baseline")
    if len(d) == 0:
        item["line"] = f"{scorer} vs {name}: nothing to compare."
        return item
    lo, hi = bootstrap_ci(d, rng, n_boot)
    item.update(
        label_mean=float(a[both].mean()),
        baseline_mean=float(b[both].mean()),
        diff_mean=float(d.mean()),
        ci95=[float(lo), float(hi)],
        better=bool(lo > 0),
    )
    word = "BETTER than" if lo > 0 else "NO BETTER than"
    item["line"] = (
        f"{scorer}: {'LLM ' if pattern else ''}labels are {word} the {name} (AUROC "
        f"{a[both].mean():.2f} vs {b[both].mean():.2f}, difference 95% CI "
        f"[{lo:.2f}, {hi:.2f}], {len(d)} features)."
    )
    return item


def bootstrap_ci(
    d: np.ndarray, rng: np.random.Generator, n_boot: int = 2000
) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of paired differences `d`."""
    boot = rng.choice(d, size=(n_boot, len(d))).mean(1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(lo), float(hi)


def _label_name(kind: str) -> str:
    return "token-pattern label" if kind == "pattern_label" else kind.replace("_", " ")


def _median(df: pd.DataFrame, col: str) -> float | None:
    v = df[col].dropna() if col in df else pd.Series(dtype=float)
    return float(v.median()) if len(v) else None


def _reasons(reasons: pd.Series) -> dict[str, int]:
    """Failure reasons counted, numbers folded ("same label for N features")."""
    folded = reasons.str.replace(r"\d+", "N", regex=True).str.slice(0, 80)
    return {k: int(v) for k, v in folded.value_counts().items()}


DONE = {"n_labeled": 20, "seconds_stage": 360.0, "naming_rate": 0.5}
"""Issue #20's bar for the default run."""


def done_criteria(summary: dict) -> dict:
    """Issue #20's criteria, each with its figure, whether it is met, and a
    sentence that says it."""
    out = {}
    n = summary["n_labeled"]
    out["labelled"] = _crit(n >= DONE["n_labeled"], f"{n} features labelled (bar 20)")
    sec = summary.get("seconds_stage", np.nan)
    out["stage_time"] = _crit(
        sec <= DONE["seconds_stage"], f"labels stage {sec:.0f} s (bar 360 s)"
    )
    truth = summary.get("ground_truth")
    if isinstance(truth, dict) and truth["n_features_with_a_family"]:
        rate, n_fam = truth["label_naming_rate"], truth["n_features_with_a_family"]
        out["names_family"] = _crit(
            rate >= DONE["naming_rate"],
            f"labels name the family of {truth['labels_naming_family']} of {n_fam} "
            f"features with purity >= {truth['min_purity']} ({rate:.0%}, bar 50 %;"
            f" shuffled labels {truth['shuffled_label_naming_rate']:.0%})",
        )
    emb = next(
        (
            c
            for c in summary["comparisons"]
            if c["scorer"] == "embedding" and c["baseline"] == "shuffled_label"
        ),
        None,
    )
    if emb and "ci95" in emb:
        lo, hi = emb["ci95"]
        out["embedding_beats_shuffled"] = _crit(
            emb["better"],
            f"embedding label minus shuffled label {emb['diff_mean']:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}] (bar: interval above 0)",
        )
    beats = summary.get("llm_beats_pattern_on", [])
    out["llm_beats_pattern"] = _crit(
        bool(beats),
        "the LLM label beats the token-pattern label on "
        + (", ".join(beats) if beats else "no scorer")
        + " (bar: at least one)",
    )
    return out


def _crit(met, says: str) -> dict:
    return {"met": bool(met), "says": says}
