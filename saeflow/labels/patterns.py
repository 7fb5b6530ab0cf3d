"""What a feature fires on, without an LLM: its tokens ranked by lift, and the
token-pattern label built from them (the floor every LLM label must beat).

Lift of a token t for a feature: the share of the feature's strong activations
(tokens at half an example's peak or more, over its top examples) that fall on
t, divided by t's frequency in the corpora the activations were cached from. A
token the feature fires on because it is everywhere ("the", ",") has a lift near
1; one it is selective for ("dividend") has a lift of hundreds. Tokens seen in
fewer than `min_examples` top examples are left out, so one rare word cannot top
the list.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from saeflow.labels.prompts import strong_tokens


class TokenLift(NamedTuple):
    """One token a feature fires on."""

    token: str
    """The token as a word: lower case, without WordPiece's ##."""
    share: float
    """Share of the feature's strong activations (top examples) on this token."""
    n_examples: int
    """Top examples in which it is a strong token."""
    corpus_freq: float
    """Its frequency in the corpus (add-one smoothed)."""
    lift: float
    """share / corpus_freq."""


class Background(NamedTuple):
    """Token frequencies of the corpus, keyed like `word`."""

    counts: Mapping[str, int]
    n_tokens: int


def word(token: str) -> str:
    """A decoded token as a word: WordPiece ## and spaces stripped, lower case."""
    return token.removeprefix("##").strip().lower()


def background_of(tokens: Iterable[Sequence[str]]) -> Background:
    """Token frequencies of already decoded token sequences."""
    counts: Counter[str] = Counter()
    for seq in tokens:
        counts.update(word(t) for t in seq)
    counts.pop("", None)
    return Background(counts, sum(counts.values()))


def corpus_background(h5_paths: Sequence[str | Path]) -> Background:
    """Token frequencies of the corpora behind activation caches (their
    `token_id` datasets, decoded one id at a time with the cache's tokenizer,
    as the examples stage decodes its windows)."""
    import h5py

    from saeflow.models.loading import load_tokenizer

    ids, ref = [], None
    for path in h5_paths:
        with h5py.File(path, "r") as f:
            ids.append(f["token_id"][:])
            ref = ref or str(f.attrs["model_ref"])
    if not ids:
        return Background({}, 0)
    uniq, n = np.unique(np.concatenate(ids), return_counts=True)
    decoded = load_tokenizer(ref).batch_decode([[int(i)] for i in uniq])
    counts: Counter[str] = Counter()
    for tok, c in zip(decoded, n.tolist(), strict=True):
        counts[word(tok)] += c
    counts.pop("", None)
    return Background(counts, int(n.sum()))


def lift_ranking(
    examples: pd.DataFrame,
    background: Background,
    n: int = 5,
    min_examples: int = 2,
) -> list[TokenLift]:
    """The `n` tokens with the highest lift among the feature's strong tokens in
    its top examples (split=explain), each in at least `min_examples` of them
    (fewer examples: at least one)."""
    top = examples[examples["split"] == "explain"]
    hits: Counter[str] = Counter()
    in_examples: Counter[str] = Counter()
    first_piece: dict[str, str] = {}
    for tokens, acts in zip(top.tokens, top.acts, strict=True):
        marks = strong_tokens(acts)
        # A strong piece counts for its whole word ("buy ##back": buyback).
        strong = []
        for w, first, span in _word_spans(tokens):
            if marks[span].any() and any(c.isalnum() for c in w):
                strong.append(w)
                first_piece[w] = first
        hits.update(strong)
        in_examples.update(set(strong))
    total = sum(hits.values())
    floor = min(min_examples, max(1, len(top) // 4))
    vocab = max(1, len(background.counts))
    out = []
    for tok, c in hits.items():
        if in_examples[tok] < floor:
            continue
        # A word split into pieces is at most as common as its first piece.
        count = background.counts.get(first_piece[tok], 0)
        freq = (count + 1) / (background.n_tokens + vocab)
        share = c / total
        out.append(TokenLift(tok, share, in_examples[tok], freq, share / freq))
    out.sort(key=lambda t: (-t.lift, -t.share, t.token))
    return out[:n]


def common_lifts(
    lifts: Sequence[TokenLift], n_top: int, min_share: float = 0.25
) -> list[TokenLift]:
    """The tokens of a lift ranking that are strong in at least `min_share` of
    the `n_top` top examples (the first one always): a word that tops the
    ranking from 2 of 20 examples ("grocery" beside "slashes", "payout") says
    little about the rest."""
    return [t for t in lifts if t.n_examples >= min_share * n_top] or list(lifts[:1])


def pattern_label(lifts: Sequence[TokenLift], k: int = 3) -> str | None:
    """The token-pattern label: the `k` highest-lift tokens, "quarter / eps /
    earnings"; None when the feature has no strong tokens."""
    words = [t.token for t in lifts[:k]]
    return " / ".join(words) if words else None


def describe_lifts(lifts: Sequence[TokenLift]) -> str:
    """The ranking as the explanation prompt shows it: "dividend (90%, x400)"."""
    return ", ".join(
        f"{t.token} ({round(100 * t.share)}%, x{_round_lift(t.lift)})" for t in lifts
    )


def _round_lift(x: float) -> int:
    """Two significant digits: x400, x35, x3."""
    if x < 10:
        return max(1, round(x))
    digits = int(math.floor(math.log10(x))) - 1
    return int(round(x, -digits))


def token_patterns(
    examples: pd.DataFrame, background: Background, n: int = 5, k: int = 3
) -> pd.DataFrame:
    """The token-pattern label and lift ranking of every feature with top
    examples: columns feature, pattern_label, lift_tokens (what the viewer's
    feature table shows for features no LLM labelled)."""
    top = examples[examples["split"] == "explain"]
    rows = []
    for feature, ex in top.groupby("feature", sort=True):
        lifts = lift_ranking(ex, background, n)
        rows.append((int(feature), pattern_label(lifts, k), describe_lifts(lifts)))
    return pd.DataFrame(rows, columns=["feature", "pattern_label", "lift_tokens"])


def context_ranking(
    examples: pd.DataFrame,
    background: Background,
    n: int = 5,
    min_share: float = 0.25,
    exclude: Iterable[str] = (),
) -> list[TokenLift]:
    """The `n` words with the highest lift in the whole windows of the
    feature's top examples (not only where it fires), each in at least
    `min_share` of them; share here is the share of examples containing the
    word. A feature that fires on "per" in "$0.45 per share" headlines has
    "dividend" around it: what names the event is often next to the peak."""
    top = examples[examples["split"] == "explain"]
    seen: Counter[str] = Counter()
    first_piece: dict[str, str] = {}
    for tokens in top.tokens:
        words = _whole_words(tokens)
        first_piece.update(words)
        seen.update({w for w in words if w.isalpha() and len(w) > 2})
    skip = set(exclude)
    vocab = max(1, len(background.counts))
    out = []
    for tok, c in seen.items():
        share = c / max(1, len(top))
        if share < min_share or tok in skip:
            continue
        # A word split into pieces is at most as common as its first piece.
        count = background.counts.get(first_piece[tok], 0)
        freq = (count + 1) / (background.n_tokens + vocab)
        out.append(TokenLift(tok, share, c, freq, share / freq))
    out.sort(key=lambda t: (-t.lift, -t.share, t.token))
    return out[:n]


def _whole_words(tokens: Sequence[str]) -> dict[str, str]:
    """WordPiece tokens joined into words ("divide", "##nds" -> "dividends"),
    each with its first piece as `word` keys it."""
    return {w: first for w, first, _ in _word_spans(tokens)}


def _word_spans(tokens: Sequence[str]) -> list[tuple[str, str, slice]]:
    """(word, its first piece, its token positions) of each word: WordPiece
    continuations (##) joined to the token before them."""
    out: list[tuple[str, str, slice]] = []
    for i, tok in enumerate(map(str, tokens)):
        if tok.startswith("##") and out:
            w, first, span = out[-1]
            out[-1] = (w + tok[2:].lower(), first, slice(span.start, i + 1))
        else:
            out.append((word(tok), word(tok), slice(i, i + 1)))
    return [x for x in out if x[0]]
