"""SYNTHETIC dated headlines with a planted trading signal, on real offline prices.

For the offline default there is no real dated news, so the backtest writes its
own: each headline is about a (ticker, trading day) drawn at random, and its
sentiment is bullish or bearish so that it *agrees with the ticker's real
next-day return* with probability ``p`` (``neutral_fraction`` of headlines are
neutral and carry no signal). ``p = 0.5`` is the placebo: sentiment is a coin flip
and no strategy should make money from it. The text comes from
`saeflow.corpus.synthetic.generate_headlines`, so the model that reads it has to
recover the sentiment from wording alone.

Headlines are stamped at midnight of their day (date only), so by the rule in
`saeflow.backtest.timing` they are acted on at that day's close and predict the return
to the next close: exactly the return their sentiment was planted on. The planted
return and agreement flag are kept as ``truth_*`` columns for checking; they are
never features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saeflow.backtest.timing import next_day_returns
from saeflow.corpus.synthetic import generate_headlines


def planted_note(p: float) -> str:
    """The label every output built on planted news carries."""
    return f"synthetic, planted signal p={p:g}"


def build_planted_news(
    closes: pd.DataFrame,
    n_headlines: int,
    p: float,
    neutral_fraction: float,
    seed: int,
) -> pd.DataFrame:
    """Headlines about the tickers of `closes` ([days, tickers] adjusted closes).

    Returns doc_id, timestamp, ticker, text, label, event, truth_next_return,
    truth_agrees, planted_p, synthetic. The same seed draws the same (day, ticker)
    pairs and uniforms for any p, so a placebo differs from a planted set only in
    the sentiment of the headlines whose uniform fell in [0.5, p).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"planted p must be in [0, 1], got {p}")
    if not 0.0 <= neutral_fraction < 1.0:
        raise ValueError(f"neutral_fraction must be in [0, 1), got {neutral_fraction}")
    # Sorted tickers: the draws must not depend on column order.
    fwd = next_day_returns(closes.sort_index(axis=1)).iloc[:-1]
    long = fwd.stack().rename("ret").reset_index()
    long.columns = ["date", "ticker", "ret"]
    long = long[long["ret"] != 0.0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rows = long.iloc[np.sort(rng.integers(len(long), size=n_headlines))]
    neutral = rng.random(n_headlines) < neutral_fraction
    agrees = rng.random(n_headlines) < p
    up = rows["ret"].to_numpy() > 0
    labels = np.where(neutral, "neutral", np.where(up == agrees, "bullish", "bearish"))
    news = generate_headlines(
        n_headlines,
        str(rows["date"].min().date()),
        str(rows["date"].max().date()),
        sorted(set(rows["ticker"])),
        label_noise=0.0,
        seed=seed,
        labels=list(labels),
        dates=list(rows["date"]),
        tickers_per_row=list(rows["ticker"]),
    )
    # generate_headlines sorts by date stably; rows are already date-sorted.
    return pd.DataFrame(
        {
            "doc_id": news["doc_id"].str.replace("syn-", "bt-"),
            "timestamp": news["date"],
            "ticker": news["ticker"],
            "text": news["text"],
            "label": news["label"],
            "event": news["event"],
            "truth_next_return": rows["ret"].to_numpy(),
            "truth_agrees": np.where(neutral, np.nan, agrees.astype(float)),
            "planted_p": p,
            "synthetic": True,
        }
    )
