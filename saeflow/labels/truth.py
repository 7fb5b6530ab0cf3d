"""Ground truth for labels, where the domain corpus has it.

The synthetic headline generator knows each headline's event family (earnings,
guidance, merger, ...). A feature whose top examples come mostly from one family
is about that family; its `purity` is the share of top examples from it. A
label `names` the family when it contains one of the family's topic words
(`EVENT_WORDS`, a fixed list written here). The same check on the shuffled
label (another feature's) is the chance rate of naming a family.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

EVENT_WORDS: dict[str, frozenset[str]] = {
    family: frozenset(words.split())
    for family, words in {
        "earnings": "earnings revenue revenues profit profits results quarter "
        "quarterly sales estimates eps loss losses",
        "guidance": "guidance outlook forecast forecasts",
        "analyst_rating": "analyst analysts rating ratings upgrade upgrades "
        "downgrade downgrades target targets broker brokers coverage",
        "merger": "merger mergers acquisition acquisitions takeover takeovers "
        "deal deals buyout",
        "product": "product products launch launches device devices",
        "legal": "legal lawsuit lawsuits court courts probe fine fines regulator "
        "regulators litigation patent patents",
        "management": "management executive executives ceo leadership "
        "appointment appointments resignation",
        "macro": "macro fed rates inflation economy economic yields tariff "
        "tariffs dollar",
        "dividend": "dividend dividends payout payouts",
        "buyback": "buyback buybacks repurchase repurchases",
        "partnership": "partnership partnerships contract contracts agreement "
        "agreements",
        "operations": "operations plant plants factory factories supply jobs "
        "layoffs facility production",
        "credit": "credit bond bonds debt rating ratings",
    }.items()
}


def event_of_docs(corpus: pd.DataFrame) -> pd.Series | None:
    """doc_id -> event family, or None when the corpus has no `event` column."""
    if "event" not in corpus or corpus["event"].isna().all():
        return None
    return corpus.set_index("doc_id")["event"].dropna()


def event_purity(doc_ids: pd.Series, events: pd.Series) -> tuple[str | None, float]:
    """(most common family of these documents, its share of them); documents
    without a family (general text, real news) count against the share."""
    fam = doc_ids.map(events)
    if fam.notna().sum() == 0:
        return None, 0.0
    top = fam.value_counts()
    return str(top.index[0]), float(top.iloc[0] / len(fam))


def names_event(label: object, family: str | None) -> bool:
    """Whether `label` contains a topic word of `family`."""
    if not isinstance(label, str) or family not in EVENT_WORDS:
        return False
    return bool(set(re.findall(r"[a-z]+", label.lower())) & EVENT_WORDS[family])


def add_truth(
    df: pd.DataFrame,
    examples: dict[tuple[str, int], pd.DataFrame],
    events: pd.Series,
) -> pd.DataFrame:
    """`df` (one row per labelled feature) with the family of each feature's top
    examples (split=explain), its purity, and whether the label and the shuffled
    label name it."""
    fams, purity = [], []
    for r in df.itertuples():
        ex = examples[(r.model, r.layer)]
        top = ex[(ex["feature"] == r.feature) & (ex["split"] == "explain")]
        f, p = event_purity(top["doc_id"], events)
        fams.append(f)
        purity.append(p)
    out = df.assign(top_event=fams, event_purity=purity)
    out["label_names_event"] = [
        names_event(lab, f) for lab, f in zip(out["label"], fams, strict=True)
    ]
    for kind in ("shuffled_label", "pattern_label"):
        col = kind if kind in out else f"{kind}_text"
        other = out.get(col, pd.Series(None, index=out.index))
        out[f"{kind}_names_event"] = [
            names_event(lab, f) for lab, f in zip(other, fams, strict=True)
        ]
    if "shown_label" in out:
        out["shown_label_names_event"] = [
            names_event(lab, f) for lab, f in zip(out["shown_label"], fams, strict=True)
        ]
    return out


def truth_summary(df: pd.DataFrame, min_purity: float = 0.7) -> dict:
    """Among all chosen features whose top examples are at least `min_purity`
    one family (a feature without an LLM label counts as not named): how many
    LLM labels name it, against the shuffled labels, the token-pattern labels
    and what the viewer shows; rates of those features."""
    pure = df[df["event_purity"] >= min_purity]
    n = len(pure)

    def named(col: str) -> int:
        return int(pure[col].sum()) if col in pure else 0

    out = {
        "min_purity": min_purity,
        "n_features_with_a_family": n,
        "n_labelled_with_a_family": int(pure["label"].notna().sum()),
        "median_purity": float(df["event_purity"].median()) if len(df) else np.nan,
        "labels_naming_family": named("label_names_event"),
        "shuffled_labels_naming_family": named("shuffled_label_names_event"),
        "pattern_labels_naming_family": named("pattern_label_names_event"),
        "shown_labels_naming_family": named("shown_label_names_event"),
        "families": {
            str(k): int(v) for k, v in pure["top_event"].value_counts().items()
        },
    }
    for kind in ("label", "shuffled_label", "pattern_label", "shown_label"):
        key = "labels" if kind == "label" else f"{kind}s"
        out[f"{kind}_naming_rate"] = out[f"{key}_naming_family"] / n if n else np.nan
    return out
