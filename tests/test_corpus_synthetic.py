"""Tests for the synthetic financial headline generator."""

import pandas as pd
import pytest

from saeflow.corpus.synthetic import EVENTS, SENTIMENTS, generate_headlines

TICKERS = ["MSFT", "AMZN", "NVDA"]
COLUMNS = [
    "doc_id",
    "text",
    "label",
    "intended_label",
    "date",
    "ticker",
    "event",
    "source",
    "synthetic",
]


def make(n: int = 300, seed: int = 0, **kwargs) -> pd.DataFrame:
    args = dict(
        n_docs=n,
        start_date="2015-01-01",
        end_date="2016-12-31",
        tickers=TICKERS,
        label_noise=0.1,
        seed=seed,
    )
    return generate_headlines(**(args | kwargs))


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return make(3000, label_noise=0.0)


def test_columns_types_and_order():
    df = make()
    assert list(df.columns) == COLUMNS
    assert df["date"].dtype == "datetime64[ns]"
    assert df["date"].is_monotonic_increasing
    assert (df["date"].dt.day_of_week < 5).all()
    assert df["date"].between("2015-01-01", "2016-12-31").all()
    assert df["doc_id"].tolist() == [f"syn-{i:06d}" for i in range(300)]
    assert set(df["label"]) | set(df["intended_label"]) <= set(SENTIMENTS)
    assert set(df["ticker"]) <= set(TICKERS) and set(df["event"]) <= set(EVENTS)
    assert (df["source"] == "synthetic_headlines").all() and df["synthetic"].all()


def test_deterministic_and_seed_dependent():
    pd.testing.assert_frame_equal(make(seed=7), make(seed=7))
    assert not make(seed=7)["text"].equals(make(seed=8)["text"])


@pytest.mark.parametrize("noise", [0.0, 0.05, 0.333, 1.0])
def test_label_noise_flips_exactly_that_many(noise):
    df = make(n=301, label_noise=noise)
    assert (df["label"] != df["intended_label"]).sum() == round(noise * 301)


def test_every_event_has_all_sentiments_and_twelve_families(big):
    assert len(EVENTS) >= 12
    counts = big.groupby(["event", "intended_label"]).size()
    assert len(counts) == len(EVENTS) * len(SENTIMENTS)


def test_text_is_varied(big):
    assert big["text"].nunique() >= 0.9 * len(big)
    # Skeleton: capitalised runs (companies, firms, months) and numbers blanked.
    skeleton = big["text"].str.replace(r"\$?[\d.,]+%?", "#", regex=True)
    skeleton = skeleton.str.replace(
        r"[A-Z][\w&'.-]*(?: [A-Z][\w&'.-]*)*", "X", regex=True
    )
    assert skeleton.nunique() >= 100
    per_sentiment = skeleton.groupby(big["intended_label"]).nunique()
    assert (per_sentiment >= 30).all()


def test_text_names_company_or_ticker(big):
    names = {"MSFT": "Microsoft", "AMZN": "Amazon", "NVDA": "Nvidia"}
    mentions = [
        ticker in text or names[ticker] in text
        for text, ticker in zip(big["text"], big["ticker"], strict=True)
    ]
    assert all(mentions)


def test_unknown_ticker_falls_back():
    df = make(n=50, tickers=["ZZZQ"])
    assert df["text"].str.contains("ZZZQ").all()


def test_given_labels_dates_and_tickers_are_used():
    n = 20
    labels = ["bullish", "bearish"] * (n // 2)
    dates = pd.bdate_range("2016-03-01", periods=n)
    tickers = ["AAPL"] * n
    df = make(n=n, labels=labels, dates=dates, tickers_per_row=tickers, label_noise=0)
    assert df["intended_label"].tolist() == labels
    assert df["label"].tolist() == labels
    assert df["date"].tolist() == list(dates)
    assert (df["ticker"] == "AAPL").all()


def test_bullish_and_bearish_words_follow_intended_label(big):
    up = big["text"].str.contains(
        r"\b(?:beat|raise|upgrade|jump|surge|soar)", regex=True
    )
    share = up.groupby(big["intended_label"]).mean()
    assert share["bullish"] > 3 * share["bearish"]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_docs": 0}, "n_docs"),
        ({"start_date": "2017-01-01", "end_date": "2016-01-01"}, "end_date"),
        ({"tickers": []}, "tickers"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"n": 3, "labels": ["bullish"]}, "labels"),
        ({"n": 2, "labels": ["bullish", "happy"]}, "labels"),
        ({"n": 2, "dates": ["2016-01-04"]}, "dates"),
        ({"n": 2, "tickers_per_row": ["MSFT"]}, "tickers_per_row"),
    ],
)
def test_bad_arguments_are_named(kwargs, argument):
    kwargs = dict(kwargs)
    n = kwargs.pop("n", 5)
    with pytest.raises(ValueError, match=argument):
        make(n=n, **kwargs)
