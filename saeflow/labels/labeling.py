"""Label SAE features with an LLM and score the labels, as EleutherAI's delphi does.

For each chosen feature:
1. explain: the labeler sees the tokens the feature fires on ranked by lift
   (`saeflow.labels.patterns`), its top examples (split=explain) as short
   windows with the firing tokens marked <<like this>>, and a few near-misses
   (contexts of those tokens where it stays silent), after worked examples, and
   writes a short noun phrase; answers that are no label (empty, cut off, an
   echo of the prompt, the same for many features) are recorded as failed
   labels with the reason;
2. score: detection, fuzzing and embedding scores on held-out examples
   (split=score), see `saeflow.labels.scoring`. Detection and fuzzing ask one
   yes/no question per snippet and read P(yes) from the labeler's next-token
   distribution, a feature's questions in one batch.
The same scores are computed in the same run for a random label (random words of
the examples) and a shuffled label (another feature's), and `verdict` says with
paired bootstrap intervals whether the labels beat them. Every feature also gets
a token-pattern label (its top tokens by lift, no LLM), scored the same way: the
floor an LLM label has to beat, and what the viewer shows where it does not.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from saeflow.labels.config import TASKS, LabelsConfig, load_templates
from saeflow.labels.labelers import AnswerCache, Labeler, cached_complete, cached_judge
from saeflow.labels.patterns import (
    Background,
    background_of,
    common_lifts,
    context_ranking,
    corpus_background,
    describe_lifts,
    lift_ranking,
    pattern_label,
    token_patterns,
)
from saeflow.labels.prompts import (
    clean_label,
    explain_input,
    label_problem,
    render_prompt,
    repeated_labels,
)
from saeflow.labels.scoring import (
    BY_QUANTILE_COLUMN,
    METRICS,
    SCORERS,
    Embedder,
    auroc_by_quantile,
    detection_task,
    embedding_task,
    fuzzing_task,
    random_label,
    score,
)
from saeflow.labels.sentences import Texts, load_texts
from saeflow.labels.truth import add_truth, event_of_docs, truth_summary
from saeflow.labels.verdict import (
    LABEL_KINDS,
    _col,
    done_criteria,
    verdict,
)

log = logging.getLogger(__name__)

__all__ = ["TASKS", "load_templates", "label_features", "make_labels", "verdict"]

SCORE_COLUMNS = [
    f"{_col(kind, scorer)}_{metric}"
    for kind in LABEL_KINDS
    for scorer in SCORERS
    for metric in METRICS
]


# ---------------------------------------------------------------- selection


def select_features(
    spec: dict[tuple[str, int], str | Path],
    matches: dict[int, str | Path],
    cfg: LabelsConfig,
) -> pd.DataFrame:
    """Features to label: per (model, layer) the `top_n` most specialized, and per
    layer the `compare_n` most specialized fine-tuned features the comparison marks
    new or changed beyond those (a top feature that is new or changed is marked
    so in `source`). Columns: model, layer, feature, specialization, source."""
    rows = []
    for (model, layer), path in spec.items():
        table = pd.read_parquet(path)
        for col in ("feature", "specialization"):
            if col not in table:
                raise ValueError(f"{path}: missing column {col!r}")
        by_spec = table.sort_values("specialization", ascending=False)
        top = by_spec.head(cfg.top_n)
        for r in top.itertuples():
            rows.append((model, layer, int(r.feature), r.specialization, "specialized"))
        if model == "finetuned" and layer in matches and cfg.compare_n:
            m = pd.read_parquet(matches[layer])
            for col in ("finetuned_feature", "status"):
                if col not in m:
                    raise ValueError(f"{matches[layer]}: missing column {col!r}")
            m = m[m["status"].isin(["new", "changed"])]
            m = m.merge(table, left_on="finetuned_feature", right_on="feature")
            m = m.sort_values("specialization", ascending=False)
            among_top = m["feature"].isin(top["feature"])
            m = pd.concat([m[among_top], m[~among_top].head(cfg.compare_n)])
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


def label_features(
    chosen: pd.DataFrame,
    examples: dict[tuple[str, int], pd.DataFrame],
    labeler: Labeler,
    cache: AnswerCache,
    templates: dict[str, str],
    cfg: LabelsConfig,
    embedder: Embedder,
    background: Background | None = None,
    texts: Texts | None = None,
) -> pd.DataFrame:
    """Label and score every row of `chosen` (see `select_features`); one output
    row per feature with label, token-pattern label, scores, baselines, answers
    and cost. `background`: the corpus' token frequencies for the lift ranking
    (default: those of all the examples given). `texts`: (corpus, doc_id) ->
    text, for showing the top examples as whole sentences (default: windows)."""
    rng = np.random.default_rng(cfg.seed)
    if background is None:
        background = background_of(t for e in examples.values() for t in e.tokens)
    ex = [examples[(r.model, r.layer)] for r in chosen.itertuples()]
    ex = [e[e["feature"] == f] for e, f in zip(ex, chosen["feature"], strict=True)]
    rows = [_empty_row(r) for r in chosen.itertuples()]
    lifts = [lift_ranking(e, background, cfg.n_lift_tokens) for e in ex]
    patterns = [pattern_label(lift, cfg.pattern_tokens) for lift in lifts]
    for row, lift, pattern in zip(rows, lifts, patterns, strict=True):
        row["pattern_label"] = pattern
        row["lift_tokens"] = describe_lifts(lift)
    t0 = time.perf_counter()
    shown = _explain(rows, ex, lifts, background, labeler, cache, templates, cfg, texts)
    # Near-misses the labeler saw are no held-out snippets.
    ex = [e.drop(index=rows_shown) for e, rows_shown in zip(ex, shown, strict=True)]
    labels = [r["label"] for r in rows]
    ok = [i for i, label in enumerate(labels) if label is not None]
    shuffled = _derangement(ok, rng)
    scored = [i for i in range(len(rows)) if labels[i] or patterns[i]]
    for i in tqdm(scored, desc="labels: scoring", unit="feature"):
        which = {"label": labels[i]} if labels[i] else {}
        if cfg.baselines and labels[i]:
            which["random_label"] = random_label(ex[i], rng)
            if shuffled.get(i) is not None:
                which["shuffled_label"] = labels[shuffled[i]]
        rows[i].update({f"{k}_text": v for k, v in which.items() if k != "label"})
        if patterns[i]:
            which["pattern_label"] = patterns[i]
        # Built whatever `scorers` says, so the random draws stay the same.
        tasks = {
            "detection": detection_task(ex[i], cfg.n_detect, rng),
            "fuzzing": fuzzing_task(ex[i], cfg.n_fuzz, rng),
        }
        tasks = {name: t for name, t in tasks.items() if name in cfg.scorers}
        if tasks:
            _judge(rows[i], which, tasks, labeler, cache, templates)
        if "embedding" in cfg.scorers:
            _embed(rows[i], which, embedding_task(ex[i]), embedder)
    log.info("labeled %d features in %.1f s", len(rows), time.perf_counter() - t0)
    df = pd.DataFrame(rows)
    df["shown_label"], df["shown_label_source"] = shown_labels(df)
    return df


def _explain(
    rows, ex, lifts, background, labeler, cache, templates, cfg, texts=None
) -> list:
    """Ask for every feature's label; set label or fail_reason in `rows`.
    `texts`: the corpus texts the top examples are shown from (their
    sentences). Returns the index labels of the near-misses each prompt
    showed."""
    inputs = []
    for e, lift in zip(ex, lifts, strict=True):
        n_top = int((e["split"] == "explain").sum())
        firing = [t.token for t in common_lifts(lift, n_top)]
        # Words in half the top examples: what they share, not what some say.
        around = context_ranking(
            e,
            background,
            cfg.n_lift_tokens,
            min_share=0.5,
            exclude=[t.token for t in lift],
        )
        inputs.append(
            explain_input(
                e,
                cfg.n_explain,
                firing,
                cfg.n_contrast,
                [t.token for t in around],
                texts=texts,
            )
        )
    prompts = [
        render_prompt(
            templates["explain"],
            examples=" | ".join(x.snippets),
            tokens=x.tokens,
            contrast=" | ".join(x.contrast) or "(none)",
            context=x.context or "(none)",
        )
        for x in inputs
    ]
    # Chunks keep an HTTP labeler's requests in flight and the bar moving.
    chunk = max(4, 2 * cfg.labeler.concurrency)
    answers = []
    for lo in tqdm(range(0, len(prompts), chunk), desc="labels: explain"):
        answers += cached_complete(labeler, cache, prompts[lo : lo + chunk])[0]
    for row, x, c, p in zip(rows, inputs, answers, prompts, strict=True):
        row.update(
            explain_examples=json.dumps(x.snippets),
            explain_contrast=json.dumps(x.contrast),
            explain_tokens=x.tokens,
            explain_context=x.context,
            explain_prompt=_j(p),
            explain_answer=c.text,
            explain_seconds=c.seconds,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
        )
        if not x.snippets:
            row["fail_reason"] = "no activating examples (dead feature)"
        elif c.error:
            row["fail_reason"] = c.error
        else:
            label = clean_label(c.text)
            row["label_raw"] = label
            problem = label_problem(label, c.truncated, p)
            row["label"], row["fail_reason"] = (
                (None, problem) if problem else (label, None)
            )
    repeated = repeated_labels([r["label"] for r in rows])
    counts = Counter(r["label"].lower() for r in rows if r["label"])
    for row in rows:
        if row["label"] and row["label"].lower() in repeated:
            n = counts[row["label"].lower()]
            row["label"], row["fail_reason"] = None, f"same label for {n} features"
    return [x.contrast_rows for x in inputs]


def _judge(row, which, tasks, labeler, cache, templates) -> None:
    """Detection and fuzzing for every label of `which`, one batch per feature."""
    keys, prompts = [], []
    for name, task in tasks.items():
        row[f"{name}_truth"] = json.dumps(task.truth)
        for kind, label in which.items():
            for snippet in task.snippets:
                keys.append((kind, name))
                prompts.append(
                    render_prompt(templates[name], label=label, snippet=snippet)
                )
    answers, hits = cached_judge(labeler, cache, prompts)
    row["judge_seconds"] = float(sum(a.seconds for a in answers))
    row["cached_answers"] = int(sum(hits))
    row["prompt_tokens"] += int(sum(a.prompt_tokens for a in answers))
    for kind in which:
        for name, task in tasks.items():
            mine = [
                (p, a)
                for (k, n), p, a in zip(keys, prompts, answers, strict=True)
                if (k, n) == (kind, name)
            ]
            p_yes = [a.p_yes for _, a in mine]
            parsed = any(a.method == "parsed" for _, a in mine)
            col = _col(kind, name)
            row[f"{col}_p_yes"] = json.dumps([round(p, 4) for p in p_yes])
            mass = [a.mass for _, a in mine if not np.isnan(a.mass)]
            row[f"{col}_mass"] = float(np.mean(mass)) if mass else np.nan
            row[f"{col}_method"] = "parsed" if parsed else "logprobs"
            row[f"{col}_unanswered"] = sum(a.error is not None for _, a in mine)
            errors = [a.error for _, a in mine if a.error]
            row[f"{col}_error"] = errors[0] if errors else None
            row[f"{col}_prompt"] = _j(mine[0][0]) if mine else None
            cut = 0.5 if parsed else None
            for metric, v in score(task.truth, p_yes, cut).items():
                row[f"{col}_{metric}"] = v


def _embed(row, which, task, embedder: Embedder) -> None:
    """Embedding AUROC and balanced accuracy of every label of `which`, and
    the AUROC per activation-quantile bin of the positives
    (`{col}_auroc_q100`: the top bin against all negatives)."""
    t0 = time.perf_counter()
    for kind, label in which.items():
        cosines = embedder.cosines(label, task.snippets)
        col = _col(kind, "embedding")
        for metric, v in score(task.truth, cosines).items():
            row[f"{col}_{metric}"] = v
        if task.quantile is not None:
            by_bin = auroc_by_quantile(task.truth, cosines, task.quantile)
            for key, v in by_bin.items():
                row[f"{col}_auroc_{key}"] = v
    row["embedding_seconds"] = time.perf_counter() - t0


def _j(messages) -> str:
    return json.dumps(messages, ensure_ascii=False)


def _derangement(items: list[int], rng: np.random.Generator) -> dict[int, int | None]:
    """Each item paired with a different one (a shifted random cycle)."""
    if len(items) < 2:
        return {i: None for i in items}
    order = [items[j] for j in rng.permutation(len(items))]
    return {a: b for a, b in zip(order, order[1:] + order[:1], strict=True)}


def _empty_row(r) -> dict:
    row = {
        "model": r.model,
        "layer": int(r.layer),
        "feature": int(r.feature),
        "source": r.source,
        "specialization": float(r.specialization),
        "label": None,
        "pattern_label": None,
        "lift_tokens": "",
        "label_raw": None,
        "fail_reason": None,
        "explain_seconds": 0.0,
        "judge_seconds": 0.0,
        "embedding_seconds": 0.0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_answers": 0,
    }
    row.update(dict.fromkeys(SCORE_COLUMNS, np.nan))
    return row


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
    "pattern_label",
    "lift_tokens",
    "shown_label",
    "shown_label_source",
    "explain_seconds",
    "judge_seconds",
    "embedding_seconds",
    "prompt_tokens",
    "completion_tokens",
    "cached_answers",
    "labeler",
]


TRUTH_COLUMNS = ["top_event", "event_purity", "label_names_event"]


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
    corpus: str | Path | None = None,
    figure_out: str | Path | None = None,
    token_caches: Sequence[str | Path] = (),
    patterns_out: str | Path | None = None,
    texts: Sequence[str | Path] = (),
) -> None:
    """Rule label_features: choose, label and score features; write the tables.
    With the domain `corpus` and its event families (the synthetic headlines),
    each feature also gets its family, purity and whether the label names it.
    `token_caches`: activation caches whose token ids give the corpus' token
    frequencies for the lift ranking (none: those of the examples).
    `patterns_out`: the token-pattern label of every feature of every labelled
    model × layer (model, layer, feature, pattern_label, lift_tokens).
    `texts`: corpus Parquet files (doc_id, text; the file stem is the corpus
    name) whose sentences the explanation prompt shows."""
    from saeflow.examples.collect import load_examples
    from saeflow.labels.labelers import make_labeler
    from saeflow.workflow.io import write_csv, write_json, write_parquet

    t_start = time.perf_counter()
    background = corpus_background(token_caches) if token_caches else None
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
    df = label_features(
        chosen,
        ex,
        labeler,
        cache,
        templates,
        cfg,
        Embedder(cfg.embedder),
        background,
        load_texts(texts) if texts else None,
    )
    df["label_ok"] = df["label"].notna()
    # One number per label (the viewer's "label score"): mean AUROC of the three
    # scorers; compare it with the baselines' in the same table.
    df["score"] = df[[f"{s}_auroc" for s in SCORERS]].mean(axis=1)
    df["seconds"] = df[["explain_seconds", "judge_seconds", "embedding_seconds"]].sum(
        axis=1
    )
    df["labeler"] = json.dumps(labeler.identity())
    events = event_of_docs(pd.read_parquet(corpus)) if corpus else None
    if events is not None:
        df = add_truth(df, ex, events)
    write_csv(df, detailed_out)
    by_bin = [c for c in df if BY_QUANTILE_COLUMN.search(c)]
    clean = [c for c in CLEAN_COLUMNS + by_bin + TRUTH_COLUMNS if c in df]
    write_csv(df[clean], clean_out)
    summary = verdict(df, cfg.seed)
    summary["ground_truth"] = (
        truth_summary(df)
        if events is not None
        else "none: the domain corpus has no event families"
    )
    summary.update(
        seconds=time.perf_counter() - t0,
        seconds_stage=time.perf_counter() - t_start,
        seconds_per_feature=float(df["seconds"].mean()) if len(df) else 0.0,
        peak_rss_mb=_peak_rss_mb(),
        labeler=labeler.identity(),
        embedder=cfg.embedder,
    )
    summary["done_criteria"] = done_criteria(summary)
    failed = [k for k, v in summary["done_criteria"].items() if not v["met"]]
    summary["statement"] += (
        " Issue #20's criteria: all met."
        if not failed
        else " Issue #20's criteria NOT met: "
        + "; ".join(summary["done_criteria"][k]["says"] for k in failed)
        + "."
    )
    log.info("labels: %s", summary["statement"])
    write_json(summary, summary_out)
    if patterns_out:
        write_parquet(all_token_patterns(examples, background, cfg), patterns_out)
    if figure_out:
        from saeflow.labels.plots import plot_label_scores

        plot_label_scores(df, SCORERS, figure_out)


def all_token_patterns(
    examples: dict[tuple[str, int], str | Path],
    background: Background | None,
    cfg: LabelsConfig,
) -> pd.DataFrame:
    """`token_patterns` of every feature of every (model, layer) examples table."""
    from saeflow.examples.collect import load_examples

    parts = []
    for (model, layer), path in examples.items():
        ex = load_examples(path)
        bg = background or background_of(ex.tokens)
        t = token_patterns(ex, bg, cfg.n_lift_tokens, cfg.pattern_tokens)
        parts.append(t.assign(model=model, layer=int(layer)))
    cols = ["model", "layer", "feature", "pattern_label", "lift_tokens"]
    return pd.concat(parts)[cols] if parts else pd.DataFrame(columns=cols)


def shown_labels(df: pd.DataFrame) -> tuple[list, list]:
    """What the viewer shows per feature: the LLM label where its mean AUROC
    over the scorers is at least the token-pattern label's, the token pattern
    otherwise (and where there is no LLM label). Returns (text, "llm" |
    "pattern" | None)."""

    def mean_auroc(kind: str) -> pd.Series:
        cols = [f"{_col(kind, s)}_auroc" for s in SCORERS]
        return df[[c for c in cols if c in df]].mean(axis=1)

    llm, pattern = mean_auroc("label"), mean_auroc("pattern_label")
    text, source = [], []
    for i, r in enumerate(df.itertuples()):
        wins = isinstance(r.label, str) and not (llm.iloc[i] < pattern.iloc[i])
        if wins:
            text.append(r.label)
            source.append("llm")
        elif isinstance(r.pattern_label, str):
            text.append(r.pattern_label)
            source.append("pattern")
        else:
            text.append(None)
            source.append(None)
    return text, source


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is(chosen: pd.DataFrame, key: tuple[str, int]) -> pd.Series:
    return (chosen["model"] == key[0]) & (chosen["layer"] == key[1])
