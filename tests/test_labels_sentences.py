"""The explanation prompt shows whole sentences of the corpus text, marked where
the feature fires, and only the firing words common to its top examples
(issue #20)."""

import pandas as pd

from saeflow.examples.collect import EXAMPLE_COLUMNS
from saeflow.labels.patterns import TokenLift, common_lifts
from saeflow.labels.prompts import explain_input, spread_top
from saeflow.labels.sentences import load_texts, sentence_around

HEADLINE = "Amazon says grocery delivery will be available in Japan from June 10"


def test_a_headline_is_shown_whole_with_its_firing_word_marked():
    tokens = ["amazon", "says", "grocery", "delivery", "will", "be"]
    acts = [0.5, 4.0, 0.0, 0.0, 0.0, 0.0]
    assert sentence_around(HEADLINE, tokens, acts) == (
        "Amazon <<says>> grocery delivery will be available in Japan from June 10"
    )


def test_pieces_mark_their_whole_word_and_punctuation_is_found():
    text = "Microsoft slashes payout by 54%; shares drop 9.9%"
    tokens = ["microsoft", "slash", "##es", "pay", "##out", "by", "54", "%", ";"]
    acts = [0, 0, 0, 0, 3.0, 0, 0, 0, 4.0]
    assert sentence_around(text, tokens, acts) == (
        "Microsoft slashes <<payout>> by 54%<<;>> shares drop 9.9%"
    )


def test_only_the_sentence_of_a_longer_text_and_at_most_max_words():
    text = (
        "The rain stopped. Mr Batt said the yachts hit stronger winds in Bass "
        "Strait at 3.5 knots! Nobody was hurt."
    )
    tokens = ["the", "yachts", "hit", "stronger", "winds"]
    acts = [0, 0, 0, 2.0, 0]
    assert sentence_around(text, tokens, acts) == (
        "Mr Batt said the yachts hit <<stronger>> winds in Bass Strait at 3.5 knots!"
    )
    assert sentence_around(text, tokens, acts, max_words=4) == (
        "… hit <<stronger>> winds in …"
    )


def test_a_window_not_in_the_text_or_without_strong_tokens_gives_none():
    assert sentence_around(HEADLINE, ["[UNK]", "says"], [0, 1.0]) is None
    assert sentence_around(HEADLINE, ["amazon", "says"], [0, 0]) is None
    assert sentence_around("Café opens", ["cafe", "opens"], [1.0, 0]) == (
        "<<Café>> opens"
    )


def test_explain_input_shows_sentences_where_it_has_the_text(tmp_path):
    pd.DataFrame({"doc_id": ["d0"], "text": [HEADLINE]}).to_parquet(
        tmp_path / "domain.parquet"
    )
    texts = load_texts([tmp_path / "domain.parquet"])
    tokens = ["amazon", "says", "grocery", "delivery"]
    rows = [
        [0, "top", "explain", "domain", d, 0, tokens, [0, a, 0, 0], 1, a, None]
        for d, a in [("d0", 4.0), ("d1", 3.0)]
    ]
    ex = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)
    x = explain_input(ex, 2, ["says"], texts=texts)
    assert x.snippets == [
        "Amazon <<says>> grocery delivery will be available in Japan from June 10",
        "amazon <<says>> grocery delivery",  # d1: no text, the window
    ]
    assert explain_input(ex, 1, ["says"]).snippets == x.snippets[1:]


def test_common_lifts_drop_words_of_few_top_examples_but_keep_one():
    lifts = [
        TokenLift("slashes", 0.13, 15, 1e-5, 300.0),
        TokenLift("grocery", 0.02, 2, 1e-5, 150.0),
        TokenLift("payout", 0.13, 15, 1e-4, 190.0),
    ]
    assert [t.token for t in common_lifts(lifts, 20)] == ["slashes", "payout"]
    assert [t.token for t in common_lifts(lifts[1:2], 20)] == ["grocery"]


def test_shown_examples_spread_from_the_strongest_to_the_weakest():
    top = pd.DataFrame({"activation": [float(a) for a in range(20)]})
    shown = spread_top(top, 5)["activation"].tolist()
    assert shown == [19.0, 14.0, 9.0, 5.0, 0.0]
    assert spread_top(top.head(3), 5)["activation"].tolist() == [2.0, 1.0, 0.0]
