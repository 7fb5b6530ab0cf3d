"""The judge's prefix key/value cache, lift ranking, the token-pattern label, int8
quantisation and the checksum refusal of a corrupted labeler file (issue #20)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.labels.config import LabelerConfig, load_templates
from saeflow.labels.labelers import (
    TransformersLabeler,
    assemble_gguf_parts,
    prefix_groups,
)
from saeflow.labels.patterns import (
    Background,
    describe_lifts,
    lift_ranking,
    pattern_label,
)
from saeflow.labels.prompts import render_prompt

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = load_templates(ROOT / "prompts")


def labeler(path: Path, **kw) -> TransformersLabeler:
    cfg = LabelerConfig(model=str(path), gguf_file=None, device="cpu", **kw)
    return TransformersLabeler(cfg)


def judge_prompts() -> list:
    """Questions as a feature asks them: per label and task, many snippets of
    different lengths after one shared description."""
    snippets = [
        "acme profit beats estimates",
        "river",
        "shares of acme jump after a long quarter of profit",
        "flows to sea",
        "acme",
    ]
    labels = ["quarterly profit and earnings beats", "rivers", "a b"]
    return [
        render_prompt(TEMPLATES[task], label=label, snippet=s)
        for label in labels
        for task in ("detection", "fuzzing")
        for s in snippets
    ]


def test_prefix_cached_judge_matches_the_uncached_one(chat_llama):
    prompts = judge_prompts()
    plain = labeler(chat_llama, prefix_cache=False).judge(prompts)
    cached_lab = labeler(chat_llama, prefix_cache=True)
    cached = cached_lab.judge(prompts)
    seqs = [cached_lab._ids(p) for p in prompts]
    groups = prefix_groups(seqs, 16)
    # The cache is really used: one group per (label, task), long prefixes.
    assert len(groups) == 6 and all(n >= 16 for n, _ in groups)
    for a, b in zip(plain, cached, strict=True):
        assert b.p_yes == pytest.approx(a.p_yes, abs=1e-5)
        assert b.mass == pytest.approx(a.mass, abs=1e-5)
    # Unequal answers are possible: the model is not indifferent to the text.
    assert np.ptp([j.p_yes for j in cached]) > 1e-4


def test_prefix_groups_split_where_prompts_diverge_early():
    a = list(range(30))
    b = [*range(20), 99, 98]
    c = [7, *range(30)]
    assert prefix_groups([a, b, c], 16) == [(20, [0, 1]), (0, [2])]
    # A prompt that is another's prefix still keeps a token of its own.
    assert prefix_groups([a, a[:18]], 16) == [(17, [0, 1])]
    assert prefix_groups([a, b], 25) == [(0, [0]), (0, [1])]


def test_int8_labeler_judges_close_to_fp32_and_says_so_in_its_identity(chat_llama):
    prompts = judge_prompts()[:5]
    fp32 = labeler(chat_llama).judge(prompts)
    q = labeler(chat_llama, quantize="int8")
    int8 = q.judge(prompts)
    import torch

    assert any(
        isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in q._model.modules()
    )
    assert q.identity()["quantize"] == "int8"
    assert "quantize" not in labeler(chat_llama).identity()
    diff = [abs(a.p_yes - b.p_yes) for a, b in zip(fp32, int8, strict=True)]
    assert max(diff) < 0.05


def planted_examples() -> tuple[pd.DataFrame, Background]:
    """A feature that fires on "dividend" in 6 of 10 top examples and on "the"
    in all 10 (more often), where "the" is 500 times more common in the corpus."""
    rows = []
    for i in range(10):
        tokens = ["the", "board", "raised", "the", "dividend" if i < 6 else "pay"]
        acts = [2.0, 0.0, 0.0, 2.0, 3.0 if i < 6 else 0.1]
        if i == 9:
            tokens[1], acts[1] = "zyzzyva", 3.0  # once: no support
        rows.append(
            [0, "top", "explain", "domain", f"d{i}", i, tokens, acts, 4, 3.0, None]
        )
    ex = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    bg = Background({"the": 50_000, "dividend": 100, "board": 500}, 1_000_000)
    return ex, bg


def test_lift_ranks_the_selective_token_above_the_frequent_one():
    ex, bg = planted_examples()
    lifts = lift_ranking(ex, bg, n=5)
    assert [t.token for t in lifts] == ["dividend", "the"]
    the, dividend = lifts[1], lifts[0]
    # "the" is the more frequent strong token, "dividend" the more selective.
    assert the.share > dividend.share
    assert dividend.n_examples == 6 and the.n_examples == 10
    assert dividend.lift == pytest.approx(
        dividend.share / ((100 + 1) / (1_000_000 + 3))
    )
    assert describe_lifts(lifts).startswith("dividend (")


def test_pattern_label_joins_the_top_tokens_by_lift():
    ex, bg = planted_examples()
    assert pattern_label(lift_ranking(ex, bg)) == "dividend / the"
    assert pattern_label(lift_ranking(ex, bg), k=1) == "dividend"
    silent = ex.assign(acts=[[0.0] * 5] * len(ex))
    assert pattern_label(lift_ranking(silent, bg)) is None


def test_a_corrupted_model_file_is_refused(tmp_path):
    """One flipped byte in one part of a model: the checksum refuses it and
    nothing is left behind to load."""
    data = [b"GGUF" + bytes(range(256)) * 8, b"weights" * 300]
    parts = [tmp_path / f"p{i}" for i in range(2)]
    for p, d in zip(parts, data, strict=True):
        p.write_bytes(d)
    good = hashlib.sha256(b"".join(data)).hexdigest()
    bad = bytearray(data[1])
    bad[100] ^= 1
    parts[1].write_bytes(bytes(bad))
    out = tmp_path / "m" / "model.gguf"
    with pytest.raises(ValueError, match="refusing"):
        assemble_gguf_parts(parts, good, out)
    assert not out.exists() and not list(out.parent.iterdir())
    # A cached file that was corrupted after assembly is not trusted either.
    parts[1].write_bytes(data[1])
    assemble_gguf_parts(parts, good, out)
    raw = bytearray(out.read_bytes())
    raw[5] ^= 1
    out.write_bytes(bytes(raw))
    assemble_gguf_parts(parts, good, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == good
    json.dumps(good)


@pytest.mark.parametrize("beams", [1, 3])
def test_prefix_cached_labels_match_uncached_generation(chat_llama, beams):
    """The explanation prompts share their system turn and worked examples; run
    once and reused, that prefix changes no answer, greedy or beam search."""
    prompts = [
        render_prompt(
            TEMPLATES["explain"], tokens=t, examples=e, contrast=c, context="x, y"
        )
        for t, e, c in [
            ("dividend, payout", "Acme lifts <<dividend>>", "dividend date set"),
            ("quarter, eps", "<<EPS>> beat in the <<quarter>>", "(none)"),
            ("court", "A <<court>> ruled", "court shoes"),
        ]
    ]
    plain = labeler(chat_llama, prefix_cache=False, num_beams=beams, max_new_tokens=6)
    cached = labeler(chat_llama, prefix_cache=True, num_beams=beams, max_new_tokens=6)
    a, b = plain.complete(prompts), cached.complete(prompts)
    assert cached._kv[0] and len(cached._kv[0]) >= 16  # the prefix really was cached
    assert [c.text for c in a] == [c.text for c in b]
    assert [c.completion_tokens for c in a] == [c.completion_tokens for c in b]


def test_wordpiece_pieces_count_as_whole_words_and_context_words_rank_by_lift():
    from saeflow.labels.patterns import context_ranking

    rows = []
    for i in range(8):
        tokens = ["acme", "buy", "##back", "of", "the", "dividend", "per", "share"]
        acts = [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # fires on "##back"
        rows.append(
            [0, "top", "explain", "domain", f"d{i}", i, tokens, acts, 2, 2.0, None]
        )
    ex = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    bg = Background({"the": 90_000, "of": 80_000, "buy": 50, "dividend": 40}, 10**6)
    assert pattern_label(lift_ranking(ex, bg)) == "buyback"
    ctx = [t.token for t in context_ranking(ex, bg, exclude=["buyback"])]
    # Words the corpus never has first (alphabetical among equals), then the
    # rarer "dividend", then "the"; "of" is too short, "buyback" excluded.
    assert ctx == ["acme", "per", "share", "dividend", "the"]
