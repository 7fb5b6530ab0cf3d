"""The sentence around an example's peak, from the corpus text it came from.

An example is a window of decoded tokens (a few before the peak, a few after),
which often cuts a text where it names its subject: "amazon says grocery
delivery will be" leaves out "available in Japan from June 10". The explanation
prompt shows the whole sentence instead, as written (case, punctuation), with
the words the feature fires on marked: a one-line headline whole, a sentence of
a longer text cut to `max_words` around the marks. The window is found in the
text by its characters (spaces, case and accents ignored, as an uncased
WordPiece tokenizer drops them); where it cannot be found ([UNK] tokens, a text
changed since), the caller keeps the window.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from saeflow.labels.prompts import strong_tokens

Texts = Mapping[tuple[str, str], str]
"""(corpus name, doc_id) -> the document's text."""

# A sentence ends at . ! ? before a space ("$3.40" does not end one), or a line end.
_END = re.compile(r"[.!?](?=\s)|\n")


def load_texts(paths: Sequence[str | Path]) -> dict[tuple[str, str], str]:
    """Texts of corpus Parquet files (doc_id, text), keyed by (file stem, doc_id):
    the stem is the corpus name the examples' `corpus` column holds."""
    import pandas as pd

    out = {}
    for path in paths:
        df = pd.read_parquet(path, columns=["doc_id", "text"])
        name = Path(path).stem
        pairs = zip(df.doc_id, df.text, strict=True)
        out.update(((name, str(d)), str(t)) for d, t in pairs)
    return out


def sentence_around(
    text: str,
    tokens: Sequence[str],
    acts: Sequence[float],
    max_words: int = 32,
) -> str | None:
    """The sentence(s) of `text` holding the strong tokens of the window
    `tokens` (activations `acts`, marked as `strong_tokens` marks them), each
    marked word wrapped in << >>; at most `max_words` words, cut around the
    first mark ("…" where cut). None when the window is not in `text` or has
    no strong token."""
    skeleton, where = _skeleton(text)
    pieces = [_skeleton(str(t).removeprefix("##"))[0] for t in tokens]
    at = skeleton.find("".join(pieces))
    if not "".join(pieces) or at < 0:
        return None
    spans = []  # character spans of the strong tokens in `text`
    for piece, strong in zip(pieces, strong_tokens(acts), strict=True):
        if piece and strong:
            spans.append((where[at], where[at + len(piece) - 1] + 1))
        at += len(piece)
    if not spans:
        return None
    lo, hi = spans[0][0], spans[-1][1]
    start = max((m.end() for m in _END.finditer(text, 0, lo)), default=0)
    end = next((m.start() + 1 for m in _END.finditer(text, hi)), len(text))
    marked = np.zeros(len(text) + 1, bool)
    for a, b in spans:
        # Whole words: a strong piece ("##out" of "payout") marks its word.
        while a > start and text[a - 1].isalnum():
            a -= 1
        while b < end and text[b].isalnum():
            b += 1
        marked[a:b] = True
    out, i = [], start
    while i < end:
        j = i
        while j < end and marked[j] == marked[i]:
            j += 1
        out.append(f"<<{text[i:j]}>>" if marked[i] else text[i:j])
        i = j
    return _cut(" ".join("".join(out).split()), max_words)


def _skeleton(text: str) -> tuple[str, list[int]]:
    """`text` without spaces, lower case, accents dropped, and for each kept
    character its position in `text`."""
    chars, where = [], []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKD", ch.lower()):
            if not c.isspace() and unicodedata.category(c) != "Mn":
                chars.append(c)
                where.append(i)
    return "".join(chars), where


def _cut(sentence: str, max_words: int) -> str:
    """At most `max_words` words, from a few before the first mark."""
    words = sentence.split()
    if len(words) <= max_words:
        return sentence
    first = next(i for i, w in enumerate(words) if "<<" in w)
    lo = max(0, min(first - max_words // 4, len(words) - max_words))
    hi = lo + max_words
    return (
        ("… " if lo else "")
        + " ".join(words[lo:hi])
        + (" …" if hi < len(words) else "")
    )
