"""Prompts of the labels stage and the checks on what comes back.

Templates are text files with `### system` / `### user` / `### assistant`
sections and `$name` placeholders; assistant sections before the last user turn
are worked examples (few-shot). The explanation prompt shows the whole
sentences of a feature's top examples, marked where it fires
(`saeflow.labels.sentences`), then the words it fires on and the words around
them, because small models name what they are shown explicitly far more
reliably than what they must infer.
A label is the first line of the answer; `label_problem` says why an answer is
no label (empty, refusal, cut off, repeating itself, an echo of the prompt) and
`repeated_labels` finds one label given to many features.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

Messages = list[dict[str, str]]

MAX_LABEL_WORDS = 12
# A label ending in one of these was cut off mid-phrase.
_DANGLING = {
    "a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "with", "by",
    "as", "at", "from", "about", "that", "which", "being", "is", "are", "their",
    "its", "like", "such",
}  # fmt: skip
# Words of the prompt's scaffolding: a label made of these alone says nothing.
_SCAFFOLD = {
    "word", "words", "text", "texts", "topic", "topics", "common", "feature",
    "features", "token", "tokens", "marked", "fires", "name", "phrase", "noun",
}  # fmt: skip
_REFUSAL = re.compile(r"\b(sorry|cannot|can't|unable|as an ai)\b", re.I)


def render_prompt(template: str, **values: str) -> Messages:
    """Fill a template ($name placeholders) and split its ### sections into chat
    messages."""
    text = string.Template(template).substitute(values)
    parts = re.split(r"^### (system|user|assistant)\s*$", text, flags=re.M)
    messages = [
        {"role": role, "content": body.strip()}
        for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt template must end with a '### user' section")
    return messages


def render_tokens(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """Join decoded tokens into text, wrapping marked ones in << >>.
    WordPiece pieces (##ing) attach to the previous token; byte-level BPE tokens
    carry their own leading spaces."""
    bpe = any(t[:1].isspace() for t in tokens)
    out = ""
    for tok, m in zip(tokens, marked, strict=True):
        glue = tok.startswith("##") and not bpe
        piece = tok[2:] if glue else tok
        core = piece.strip() if bpe else piece
        lead = piece[: len(piece) - len(piece.lstrip())] if bpe else ""
        shown = f"<<{core}>>" if m else core
        sep = "" if glue or bpe or not out else " "
        out += sep + lead + shown
    return out.strip()


def firing_tokens(examples: pd.DataFrame, n: int) -> str:
    """The n tokens the feature peaks on most often in `examples`, with counts:
    "dividend (9), payout (3)"."""
    peaks = Counter(
        _word(tokens[int(peak)])
        for tokens, peak in zip(examples.tokens, examples.peak, strict=True)
    )
    peaks.pop("", None)
    return ", ".join(f"{tok} ({c})" for tok, c in peaks.most_common(n))


def _word(token: str) -> str:
    return token.removeprefix("##").strip().lower()


class ExplainInput(NamedTuple):
    """What the explanation prompt shows of one feature."""

    snippets: list[str]
    """The strongest top examples (split=explain) with the strong tokens marked:
    each its sentence of the corpus text (`saeflow.labels.sentences`), or a
    short window around its peak where there is no text."""
    tokens: str
    """Its tokens ranked by lift, most specific first ("dividend, payout")."""
    contrast: list[str]
    """Near-misses: contexts of its top tokens where it stays silent
    (negative_similar examples), unmarked."""
    contrast_rows: list[int]
    """Index labels (in the examples table) of the near-misses shown: the
    scorers leave them out."""
    context: str
    """Words common around its peaks, ranked by lift ("dividend, payable")."""


def explain_input(
    examples: pd.DataFrame,
    n: int,
    tokens: Sequence[str],
    n_contrast: int = 2,
    context: Sequence[str] = (),
    before: int = 8,
    after: int = 3,
    texts: Mapping[tuple[str, str], str] | None = None,
) -> ExplainInput:
    """n top examples of a feature, from the strongest to the weakest
    (`spread_top`; tokens at half the peak or more marked), its `tokens`
    (ranked by lift, `saeflow.labels.patterns`), the `context` words around
    them, and `n_contrast` near-misses (similar negatives, windows of `before`
    tokens before the peak and `after` after it). A top example is its
    sentence of the corpus text where `texts` ((corpus, doc_id) -> text) has
    it, else a window as wide."""
    from saeflow.labels.sentences import sentence_around

    top = examples[examples["split"] == "explain"]
    snippets = []
    for r in spread_top(top, n).itertuples():
        marks = strong_tokens(r.acts)
        doc = (str(getattr(r, "corpus", "")), str(getattr(r, "doc_id", "")))
        text = (texts or {}).get(doc)
        sentence = sentence_around(text, r.tokens, r.acts) if text else None
        window = _window(r.tokens, marks, int(r.peak), before, after)
        snippets.append(sentence or window)
    near = examples[examples["kind"] == "negative_similar"].head(n_contrast)
    contrast = [
        _window(t, [False] * len(t), int(p), before, after)
        for t, p in zip(near.tokens, near.peak, strict=True)
    ]
    return ExplainInput(
        snippets, ", ".join(tokens), contrast, list(near.index), ", ".join(context)
    )


def spread_top(top: pd.DataFrame, n: int) -> pd.DataFrame:
    """n of the top examples spread evenly over their ranking by activation,
    the strongest first and the weakest last: 20 top examples often hold more
    than one kind of text ("wins approval", "wins dismissal", "wins a
    contract"), and the 5 strongest alone may show only the first."""
    ranked = top.sort_values("activation", ascending=False, kind="stable")
    if len(ranked) <= n:
        return ranked
    return ranked.iloc[np.linspace(0, len(ranked) - 1, n).round().astype(int)]


def _window(tokens, marks, peak: int, before: int, after: int) -> str:
    """Tokens peak-before .. peak+after rendered, WordPiece pieces kept whole."""
    lo, hi = max(0, peak - before), min(len(tokens), peak + after + 1)
    while lo > 0 and str(tokens[lo]).startswith("##"):
        lo -= 1
    while hi < len(tokens) and str(tokens[hi]).startswith("##"):
        hi += 1
    return render_tokens(list(tokens[lo:hi]), list(marks[lo:hi]))


def strong_tokens(acts: Sequence[float], share: float = 0.5) -> np.ndarray:
    """Which tokens to mark: those at `share` of the snippet's peak or above (a
    feature that fires weakly on a whole sentence would otherwise mark it all)."""
    a = np.asarray(acts, float)
    return (a > 0) & (a >= share * a.max(initial=0.0))


def clean_label(text: str) -> str:
    """The first non-empty line of an answer, without a "Label:" prefix,
    markdown or quotes."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"[*_`\"<>]", "", line)
    line = re.sub(r"^\s*(label|feature|answer)\s*[:\-]\s*", "", line, flags=re.I)
    return line.strip(" .:;-'")


def label_problem(label: str, truncated: bool, prompt: Messages) -> str | None:
    """Why `label` is not a usable label, or None: empty, a refusal, cut off, too
    long, repeating itself, or an echo of the prompt (the token counts, four
    words in a row of an example text, a worked example's answer or words)."""
    words = re.findall(r"[a-z0-9']+", label.lower())
    if sum(c.isalpha() for c in label) < 3:
        return "empty answer"
    if _REFUSAL.search(label):
        return "refusal"
    if truncated or words[-1] in _DANGLING:
        return "cut-off sentence"
    if len(words) > MAX_LABEL_WORDS:
        return f"not a short phrase ({len(words)} words)"
    content = [w for w in words if w not in _DANGLING]
    if len(set(content)) < len(content):
        return "repeats itself"
    if set(content) <= _SCAFFOLD:
        return "no content (only the prompt's own words)"
    if re.search(r"\(\d+\)", label):
        return "echo of the prompt (its token counts)"
    *before, own = prompt
    answers = {_norm(m["content"]) for m in before if m["role"] == "assistant"}
    if _norm(label) in answers:
        return "echo of the prompt (a worked example's label)"
    shown = " ".join(re.findall(r"[a-z0-9']+", own["content"].lower()))
    if any(" ".join(words[i : i + 4]) in shown for i in range(len(words) - 3)):
        return "copy of an example text"
    seen = _words(" ".join(m["content"] for m in before))
    borrowed = sorted(
        w for w in set(content) if len(w) > 3 and w in seen - _words(own["content"])
    )
    if borrowed:
        return f"echo of the worked examples ({', '.join(borrowed)})"
    return None


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def repeated_labels(labels: Sequence[str | None], share: float = 0.2) -> set[str]:
    """Labels (case-insensitive) given to at least 3 features and at least
    `share` of all: a labeler that says the same thing whatever it is shown."""
    counts = Counter(label.lower() for label in labels if label)
    floor = max(3, share * len(labels))
    return {label for label, c in counts.items() if c >= floor}
