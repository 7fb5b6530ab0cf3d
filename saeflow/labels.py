"""Label SAE features with an LLM and score the labels as EleutherAI's delphi does.

For each chosen feature:
1. explain: the LLM sees the top examples (split=explain), activating tokens
   marked <<like this>>, and writes a short label;
2. detection: given the label, it says for held-out examples (split=score: half
   quantile samples, half zero-activation negatives) whether the feature fires;
3. fuzzing: given the label, it says for held-out activating examples whether the
   marked tokens are the right ones (half are marked at random non-firing tokens).
Per feature: balanced accuracy, F1 and AUROC of its answers. In the same run the
same questions are asked with a random label (random words from the examples) and
with a shuffled label (another feature's), and `verdict` says plainly whether the
labels beat those baselines. Answers are binary, so AUROC equals balanced accuracy
here; it is reported for labelers that are later given scores.
"""

from __future__ import annotations

import json
import logging
import re
import string
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from tqdm import tqdm

from saeflow.labelers import AnswerCache, Completion, Labeler, Messages, cached_complete
from saeflow.labeling_config import TASKS, LabelsConfig, load_templates

log = logging.getLogger(__name__)

__all__ = ["TASKS", "load_templates", "label_features", "make_labels", "verdict"]


# ---------------------------------------------------------------- prompts


def render_prompt(template: str, **values: str) -> Messages:
    """Fill a template ($name placeholders) and split its ### system / ### user
    sections into chat messages."""
    text = string.Template(template).substitute(values)
    parts = re.split(r"^### (system|user)\s*$", text, flags=re.M)
    messages = [
        {"role": role, "content": body.strip()}
        for role, body in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt template needs a '### user' section")
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


def numbered(snippets: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(snippets))


# ---------------------------------------------------------------- parsing


class Parsed(NamedTuple):
    """A parsed answer: the value, or None and why not."""

    value: object
    reason: str | None


def parse_label(text: str) -> Parsed:
    """The label in an explanation answer ("Label: ..." or its first line)."""
    m = re.search(r"label\s*[:\-]\s*(.+)", text, flags=re.I)
    lines = [m.group(1)] if m else [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return Parsed(None, "empty answer")
    label = re.sub(r"[*_`\"<>]", "", lines[0]).strip(" .:;-'")
    label = " ".join(label.split()[:12])
    if sum(c.isalpha() for c in label) < 3:
        return Parsed(None, f"no label in answer: {text[:80]!r}")
    if not m and re.search(r"\b(sorry|cannot|can't|unable|as an ai)\b", label, re.I):
        return Parsed(None, f"no label in answer (refusal): {text[:80]!r}")
    return Parsed(label, None)


def parse_bits(text: str, n: int) -> Parsed:
    """A list of n 0/1 answers ("[1, 0, 1]", or n bare 0/1 digits)."""
    for m in re.finditer(r"\[([^\]]*)\]", text):
        bits = re.findall(r"\b[01]\b", m.group(1))
        if len(bits) == n and not re.search(r"[2-9]", m.group(1)):
            return Parsed([int(b) for b in bits], None)
    bits = re.findall(r"(?<![\d.])[01](?![\d.])", text)
    if len(bits) == n:
        return Parsed([int(b) for b in bits], None)
    return Parsed(None, f"expected {n} answers of 0/1, got {text[:80]!r}")


def binary_scores(truth: Sequence[int], pred: Sequence[int] | None) -> dict[str, float]:
    """Balanced accuracy, F1 and AUROC (NaN when unanswered or one class only)."""
    nan = {"balanced_accuracy": np.nan, "f1": np.nan, "auroc": np.nan}
    if pred is None or len(set(truth)) < 2:
        return nan
    return {
        "balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
        "f1": float(f1_score(truth, pred, zero_division=0)),
        "auroc": float(roc_auc_score(truth, pred)),
    }


# ---------------------------------------------------------------- example sets


class Task(NamedTuple):
    """One scoring question set: snippets shown and the true answer for each."""

    snippets: list[str]
    truth: list[int]


def explain_snippets(ex: pd.DataFrame, n: int) -> list[str]:
    """The n strongest top examples, activating tokens marked."""
    top = ex[ex["split"] == "explain"].nlargest(n, "activation")
    pairs = zip(top.tokens, top.acts, strict=True)
    return [render_tokens(t, np.asarray(a) > 0) for t, a in pairs]


def detection_task(ex: pd.DataFrame, n: int, rng: np.random.Generator) -> Task:
    """Half activating (quantile samples), half negatives, shuffled; no marks."""
    score = ex[ex["split"] == "score"]
    pos = _spread(score[score["kind"] == "quantile"], n // 2)
    neg = score[score["kind"].str.startswith("negative")]
    neg = neg.iloc[rng.permutation(len(neg))[: n - len(pos)]]
    both = pd.concat([pos, neg])
    truth = [1] * len(pos) + [0] * len(neg)
    order = rng.permutation(len(both))
    snippets = [render_tokens(t, [False] * len(t)) for t in both.tokens]
    return Task([snippets[i] for i in order], [truth[i] for i in order])


def fuzzing_task(ex: pd.DataFrame, n: int, rng: np.random.Generator) -> Task:
    """Activating examples; half marked at their firing tokens, half at as many
    random non-firing tokens (delphi's fuzzing)."""
    score = ex[ex["split"] == "score"]
    pos = _spread(score[score["kind"] == "quantile"], n)
    snippets, truth = [], []
    for i, (tokens, acts) in enumerate(zip(pos.tokens, pos.acts, strict=True)):
        fires = np.asarray(acts) > 0
        right = i % 2 == 0 or fires.all()
        if not right:
            wrong = rng.permutation(np.flatnonzero(~fires))[: max(1, fires.sum())]
            fires = np.zeros(len(tokens), bool)
            fires[wrong] = True
        snippets.append(render_tokens(tokens, fires))
        truth.append(int(right))
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


# ---------------------------------------------------------------- selection


def select_features(
    spec: dict[tuple[str, int], str | Path],
    matches: dict[int, str | Path],
    cfg: LabelsConfig,
) -> pd.DataFrame:
    """Features to label: per (model, layer) the `top_n` most specialized, and per
    layer the `compare_n` most specialized fine-tuned features the comparison marks
    new or changed. Columns: model, layer, feature, specialization, source."""
    rows = []
    for (model, layer), path in spec.items():
        table = pd.read_parquet(path)
        for col in ("feature", "specialization"):
            if col not in table:
                raise ValueError(f"{path}: missing column {col!r}")
        by_spec = table.sort_values("specialization", ascending=False)
        for r in by_spec.head(cfg.top_n).itertuples():
            rows.append((model, layer, int(r.feature), r.specialization, "specialized"))
        if model == "finetuned" and layer in matches and cfg.compare_n:
            m = pd.read_parquet(matches[layer])
            for col in ("finetuned_feature", "status"):
                if col not in m:
                    raise ValueError(f"{matches[layer]}: missing column {col!r}")
            m = m[m["status"].isin(["new", "changed"])]
            m = m.merge(table, left_on="finetuned_feature", right_on="feature")
            m = m.sort_values("specialization", ascending=False).head(cfg.compare_n)
            for r in m.itertuples():
                rows.append(
                    (model, layer, int(r.feature), r.specialization, str(r.status))
                )
    df = pd.DataFrame(
        rows, columns=["model", "layer", "feature", "specialization", "source"]
    )
    # A feature both specialized and new/changed is labeled once, sources joined.
    return (
        df.groupby(["model", "layer", "feature"], sort=False)
        .agg(specialization=("specialization", "first"), source=("source", "+".join))
        .reset_index()
    )


# ---------------------------------------------------------------- labeling


class _Asker:
    """Asks prompts through the cache, in chunks, with a progress bar; books
    time and tokens per feature."""

    def __init__(self, labeler: Labeler, cache: AnswerCache, n_features: int, chunk):
        self.labeler, self.cache, self.chunk = labeler, cache, chunk
        self.seconds = np.zeros(n_features)
        self.tokens = np.zeros((n_features, 2), int)
        self.cached = np.zeros(n_features, int)

    def ask(self, owners: list[int], prompts: list[Messages], desc: str):
        """Answers to `prompts`; `owners[i]` is the feature prompt i is about."""
        out: list[Completion] = []
        hits: list[bool] = []
        with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
            for lo in range(0, len(prompts), self.chunk):
                got, hit = cached_complete(
                    self.labeler, self.cache, prompts[lo : lo + self.chunk]
                )
                out += got
                hits += hit
                bar.update(len(got))
        for f, c, h in zip(owners, out, hits, strict=True):
            # Cached answers keep the time and tokens they cost when first asked.
            self.seconds[f] += c.seconds
            self.tokens[f] += (c.prompt_tokens, c.completion_tokens)
            self.cached[f] += h
        return out


def label_features(
    chosen: pd.DataFrame,
    examples: dict[tuple[str, int], pd.DataFrame],
    labeler: Labeler,
    cache: AnswerCache,
    templates: dict[str, str],
    cfg: LabelsConfig,
) -> pd.DataFrame:
    """Label and score every row of `chosen` (see `select_features`); one output
    row per feature with label, scores, baselines, answers and cost."""
    rng = np.random.default_rng(cfg.seed)
    n = len(chosen)
    asker = _Asker(labeler, cache, n, chunk=max(4, 2 * cfg.labeler.concurrency))
    ex = [examples[(r.model, r.layer)] for r in chosen.itertuples()]
    ex = [e[e["feature"] == f] for e, f in zip(ex, chosen["feature"], strict=True)]
    rows = [_empty_row(r) for r in chosen.itertuples()]

    # 1. Explanations.
    expl = [explain_snippets(e, cfg.n_explain) for e in ex]
    prompts = [
        render_prompt(templates["explain"], examples=numbered(s), n=str(len(s)))
        for s in expl
    ]
    t0 = time.perf_counter()
    answers = asker.ask(list(range(n)), prompts, "labels: explain")
    for i, (c, p) in enumerate(zip(answers, prompts, strict=True)):
        rows[i].update(explain_examples=json.dumps(expl[i]), explain_prompt=_j(p))
        rows[i]["explain_answer"] = c.text
        if not expl[i]:
            rows[i]["fail_reason"] = "no activating examples (dead feature)"
        elif c.error:
            rows[i]["fail_reason"] = c.error
        else:
            parsed = parse_label(c.text)
            rows[i]["label"], rows[i]["fail_reason"] = parsed
    labels = [r["label"] for r in rows]

    # 2. Scoring: each feature's label, a random label, another feature's label.
    ok = [i for i in range(n) if labels[i] is not None]
    shuffled = _derangement(ok, rng)
    jobs: list[tuple[int, str, str, str, Task]] = []  # (feature, which, task, label)
    for i in ok:
        tasks = {
            "detection": detection_task(ex[i], cfg.n_detect, rng),
            "fuzzing": fuzzing_task(ex[i], cfg.n_fuzz, rng),
        }
        which = {"label": labels[i]}
        if cfg.baselines:
            which["random_label"] = random_label(ex[i], rng)
            if shuffled.get(i) is not None:
                which["shuffled_label"] = labels[shuffled[i]]
        for name, task in tasks.items():
            rows[i][f"{name}_truth"] = json.dumps(task.truth)
            for kind, label in which.items():
                jobs.append((i, kind, name, label, task))
        rows[i].update({f"{k}_text": v for k, v in which.items() if k != "label"})
    prompts = [
        render_prompt(
            templates[name],
            label=label,
            examples=numbered(task.snippets),
            n=str(len(task.snippets)),
        )
        for _, _, name, label, task in jobs
    ]
    answers = asker.ask([j[0] for j in jobs], prompts, "labels: scoring")
    for (i, kind, name, _, task), c, p in zip(jobs, answers, prompts, strict=True):
        col = name if kind == "label" else f"{kind}_{name}"
        parsed = parse_bits(c.text, len(task.truth)) if not c.error else None
        pred = parsed.value if parsed else None
        reason = c.error or (parsed.reason if parsed else None)
        rows[i][f"{col}_prompt"], rows[i][f"{col}_answer"] = _j(p), c.text
        rows[i][f"{col}_pred"] = json.dumps(pred)
        rows[i][f"{col}_error"] = reason
        for metric, v in binary_scores(task.truth, pred).items():
            rows[i][f"{col}_{metric}"] = v
    for i, row in enumerate(rows):
        row.update(
            seconds=float(asker.seconds[i]),
            prompt_tokens=int(asker.tokens[i, 0]),
            completion_tokens=int(asker.tokens[i, 1]),
            cached_answers=int(asker.cached[i]),
        )
    log.info("labeled %d features in %.1f s", n, time.perf_counter() - t0)
    return pd.DataFrame(rows)


def _j(messages: Messages) -> str:
    return json.dumps(messages, ensure_ascii=False)


def _derangement(items: list[int], rng: np.random.Generator) -> dict[int, int | None]:
    """Each item paired with a different one (a shifted random cycle)."""
    if len(items) < 2:
        return {i: None for i in items}
    order = [items[j] for j in rng.permutation(len(items))]
    return {a: b for a, b in zip(order, order[1:] + order[:1], strict=True)}


SCORE_COLUMNS = [
    f"{prefix}{task}_{metric}"
    for prefix in ("", "random_label_", "shuffled_label_")
    for task in ("detection", "fuzzing")
    for metric in ("balanced_accuracy", "f1", "auroc")
]


def _empty_row(r) -> dict:
    row = {
        "model": r.model,
        "layer": int(r.layer),
        "feature": int(r.feature),
        "source": r.source,
        "specialization": float(r.specialization),
        "label": None,
        "fail_reason": None,
    }
    row.update({c: np.nan for c in SCORE_COLUMNS})
    return row


# ---------------------------------------------------------------- verdict


def verdict(df: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> dict:
    """Do labels beat the baselines? Per task and baseline: mean balanced accuracy
    of both, and a paired bootstrap 95 % interval of the mean difference over
    features; `better` only when the interval lies above 0. `statement` says it
    in one plain sentence per comparison."""
    rng = np.random.default_rng(seed)
    out: dict = {
        "n_features": len(df),
        "n_labeled": int(df["label"].notna().sum()),
        "n_failed": int(df["label"].isna().sum()),
        "comparisons": [],
    }
    lines = []
    for task in ("detection", "fuzzing"):
        for base in ("random_label", "shuffled_label"):
            a = df[f"{task}_balanced_accuracy"].to_numpy(float)
            b = df[f"{base}_{task}_balanced_accuracy"].to_numpy(float)
            both = ~np.isnan(a) & ~np.isnan(b)
            d = a[both] - b[both]
            item = {"task": task, "baseline": base, "n": int(both.sum())}
            if len(d) == 0:
                item.update(better=False, note="no feature scored with both")
                lines.append(f"{task} vs {base}: nothing to compare (no answers).")
                out["comparisons"].append(item)
                continue
            boot = rng.choice(d, size=(n_boot, len(d))).mean(1)
            lo, hi = np.quantile(boot, [0.025, 0.975])
            item.update(
                label_mean=float(a[both].mean()),
                baseline_mean=float(b[both].mean()),
                diff_mean=float(d.mean()),
                ci95=[float(lo), float(hi)],
                better=bool(lo > 0),
            )
            out["comparisons"].append(item)
            word = "BETTER than" if lo > 0 else "NO BETTER than"
            lines.append(
                f"{task}: labels are {word} the {base.replace('_', ' ')} baseline "
                f"(balanced accuracy {a[both].mean():.2f} vs {b[both].mean():.2f}, "
                f"difference 95% CI [{lo:.2f}, {hi:.2f}], {len(d)} features)."
            )
    out["labels_beat_baselines"] = bool(
        out["comparisons"] and all(c["better"] for c in out["comparisons"])
    )
    out["statement"] = " ".join(lines) + (
        ""
        if out["labels_beat_baselines"]
        else " Read these labels as unvalidated guesses, not descriptions."
    )
    return out


# ---------------------------------------------------------------- stage


CLEAN_COLUMNS = [
    "model",
    "layer",
    "feature",
    "source",
    "specialization",
    "label",
    "score",
    "label_ok",
    "fail_reason",
    *SCORE_COLUMNS,
    "seconds",
    "prompt_tokens",
    "completion_tokens",
    "cached_answers",
    "labeler",
]


def make_labels(
    spec: dict[tuple[str, int], str],
    examples: dict[tuple[str, int], str],
    matches: dict[int, str],
    templates: dict[str, str],
    cfg: LabelsConfig,
    cache_dir: str | Path,
    clean_out: str | Path,
    detailed_out: str | Path,
    summary_out: str | Path,
    prepared_model: str | Path | None = None,
) -> None:
    """Rule label_features: choose, label and score features; write the tables."""
    from saeflow.examples import load_examples
    from saeflow.io import write_csv, write_json
    from saeflow.labelers import make_labeler

    chosen = select_features(spec, matches, cfg)
    log.info("labeling %d features: %s", len(chosen), chosen.to_dict("records"))
    ex = {
        key: load_examples(path, chosen.loc[_is(chosen, key), "feature"].tolist())
        for key, path in examples.items()
        if _is(chosen, key).any()
    }
    cache_dir = Path(cache_dir)
    labeler = make_labeler(cfg.labeler, cache_dir / "models", prepared_model)
    cache = AnswerCache(cache_dir / "answers")
    t0 = time.perf_counter()
    df = label_features(chosen, ex, labeler, cache, templates, cfg)
    df["label_ok"] = df["label"].notna()
    # One number per label (the viewer's "label score"): mean balanced accuracy of
    # detection and fuzzing; compare it with the baselines' in the same table.
    df["score"] = df[["detection_balanced_accuracy", "fuzzing_balanced_accuracy"]].mean(
        axis=1
    )
    df["labeler"] = json.dumps(labeler.identity())
    write_csv(df, detailed_out)
    write_csv(df[CLEAN_COLUMNS], clean_out)
    summary = verdict(df, cfg.seed)
    summary.update(
        seconds=time.perf_counter() - t0,
        seconds_per_feature=float(df["seconds"].mean()) if len(df) else 0.0,
        labeler=labeler.identity(),
    )
    log.info("labels: %s", summary["statement"])
    write_json(summary, summary_out)


def _is(chosen: pd.DataFrame, key: tuple[str, int]) -> pd.Series:
    return (chosen["model"] == key[0]) & (chosen["layer"] == key[1])
