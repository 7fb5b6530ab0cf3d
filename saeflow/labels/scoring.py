"""How well a label describes its feature: three scorers, each a continuous
score per held-out snippet, summarised per feature as AUROC and balanced
accuracy.

- detection: the labeler is asked, one snippet at a time, whether the snippet
  contains what the label says; half the snippets activate the feature
  (quantile samples), half do not (negatives). Score = P(yes).
- fuzzing: activating snippets only, half marked at the tokens where the feature
  fires, half at as many random tokens where it does not (delphi's fuzzing);
  the labeler is asked whether the marked words are what the label says.
- embedding: cosine between a sentence embedding of the label and of each
  held-out snippet (activating vs non-activating), with no LLM at all.

AUROC needs no threshold; balanced accuracy thresholds at the median score of
the feature's own questions, which are half positive by construction, so the
threshold never looks at the truth (0.5 for parsed yes/no answers). Chance is
0.5 for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from saeflow.labels.prompts import render_tokens, strong_tokens

SCORERS = ("detection", "fuzzing", "embedding")
METRICS = ("auroc", "balanced_accuracy")


class Task(NamedTuple):
    """One scorer's snippets for one feature and the true answer for each."""

    snippets: list[str]
    truth: list[int]
    quantile: list[float] | None = None
    """Per snippet, the upper bound of the activation-quantile bin an
    activating snippet was drawn from (NaN for a negative); None where the
    scorer does not keep it."""


def detection_task(ex: pd.DataFrame, n: int, rng: np.random.Generator) -> Task:
    """Half activating (quantile samples spread over the range), half negatives,
    in random order; no marks."""
    score = ex[ex["split"] == "score"]
    pos = _spread(score[score["kind"] == "quantile"], n // 2)
    neg = score[score["kind"].str.startswith("negative")]
    neg = neg.iloc[rng.permutation(len(neg))[: n - len(pos)]]
    return _shuffled(pd.concat([pos, neg]).tokens, [1] * len(pos) + [0] * len(neg), rng)


def fuzzing_task(ex: pd.DataFrame, n: int, rng: np.random.Generator) -> Task:
    """Activating examples; half marked at their strong tokens (as the label's
    writer saw them), half at as many random tokens where the feature is 0."""
    score = ex[ex["split"] == "score"]
    pos = _spread(score[score["kind"] == "quantile"], n)
    snippets, truth = [], []
    for i, (tokens, acts) in enumerate(zip(pos.tokens, pos.acts, strict=True)):
        marks = strong_tokens(acts)
        silent = np.flatnonzero(np.asarray(acts) <= 0)
        right = i % 2 == 0 or len(silent) == 0
        if not right:
            wrong = rng.permutation(silent)[: max(1, marks.sum())]
            marks = np.zeros(len(tokens), bool)
            marks[wrong] = True
        snippets.append(render_tokens(tokens, marks))
        truth.append(int(right))
    order = rng.permutation(len(snippets))
    return Task([snippets[i] for i in order], [truth[i] for i in order])


def embedding_task(ex: pd.DataFrame) -> Task:
    """Every held-out example: activating (quantile samples) vs negatives,
    with the quantile bin of each activating one."""
    score = ex[ex["split"] == "score"]
    truth = [int(k == "quantile") for k in score["kind"]]
    snippets = [render_tokens(t, [False] * len(t)) for t in score.tokens]
    quantile = pd.to_numeric(score["quantile"], errors="coerce").astype(float)
    quantile = [q if t else np.nan for q, t in zip(quantile, truth, strict=True)]
    return Task(snippets, truth, quantile)


def _shuffled(tokens, truth: list[int], rng: np.random.Generator) -> Task:
    snippets = [render_tokens(t, [False] * len(t)) for t in tokens]
    order = rng.permutation(len(snippets))
    return Task([snippets[i] for i in order], [truth[i] for i in order])


def _spread(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """n rows spread evenly over the activation range."""
    df = df.sort_values("activation")
    if len(df) <= n:
        return df
    return df.iloc[np.linspace(0, len(df) - 1, n).round().astype(int)]


def random_label(examples: pd.DataFrame, rng: np.random.Generator, k: int = 3) -> str:
    """k random words of the examples' vocabulary (the random-label baseline)."""
    words = sorted(
        {t.strip().lower() for ts in examples.tokens for t in ts if t.strip().isalpha()}
    )
    return " ".join(rng.choice(words, size=min(k, len(words)), replace=False))


def score(
    truth: Sequence[int], values: Sequence[float], threshold: float | None = None
) -> dict[str, float]:
    """AUROC of `values` against `truth`, and balanced accuracy of values above
    `threshold` (default: their median). NaN values (unanswered questions) are
    left out; NaN metrics when fewer than one of each class remain."""
    t = np.asarray(truth, int)
    v = np.asarray(values, float)
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    if len(set(t.tolist())) < 2:
        return dict.fromkeys(METRICS, np.nan)
    cut = np.median(v) if threshold is None else threshold
    return {
        "auroc": float(roc_auc_score(t, v)),
        "balanced_accuracy": float(balanced_accuracy_score(t, v > cut)),
    }


BY_QUANTILE_COLUMN = re.compile(r"embedding_auroc_q(\d+)$")
"""A per-bin embedding AUROC column (`auroc_by_quantile`); fullmatch: the
label's own, search: any label kind's."""


def quantile_key(q: float) -> str:
    """Column suffix of an activation-quantile bin, by its upper bound in
    percent: 1.0 -> "q100" (the top bin)."""
    return f"q{round(100 * q)}"


def auroc_by_quantile(
    truth: Sequence[int], values: Sequence[float], quantile: Sequence[float]
) -> dict[str, float]:
    """AUROC of each activation-quantile bin's activating snippets against all
    the negatives, keyed by `quantile_key` ("q100": the top bin). A label
    written from a feature's strongest examples may describe its top bin and
    not the weak activations below it; this says which."""
    t = np.asarray(truth, int)
    v = np.asarray(values, float)
    q = np.asarray(quantile, float)
    neg = t == 0
    out = {}
    for b in sorted(set(q[~np.isnan(q)].tolist())):
        mine = neg | (q == b)
        out[quantile_key(b)] = score(t[mine], v[mine])["auroc"]
    return out


class Embedder:
    """A sentence embedding (mean-pooled last hidden state, unit length) of a
    transformers encoder: all-MiniLM-L6-v2, as sentence-transformers pools it,
    ships offline. Loaded on first use; embeddings are memoised per text."""

    def __init__(self, ref: str, batch_size: int = 64) -> None:
        self.ref, self.batch_size = ref, batch_size
        self._model = self._tok = None
        self._seen: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        new = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if new and self._model is None:
            from transformers import AutoModel

            from saeflow.models.loading import load_tokenizer, resolve_model_ref

            self._tok = load_tokenizer(self.ref)
            self._model = AutoModel.from_pretrained(resolve_model_ref(self.ref)).eval()
        for lo in range(0, len(new), self.batch_size):
            batch = new[lo : lo + self.batch_size]
            enc = self._tok(batch, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            self._seen.update(zip(batch, pooled.numpy(), strict=True))
        return np.stack([self._seen[t] for t in texts]) if texts else np.zeros((0, 0))

    def cosines(self, label: str, snippets: Sequence[str]) -> np.ndarray:
        """Cosine of the label's embedding with each snippet's."""
        both = self([label, *snippets])
        return both[1:] @ both[0]
