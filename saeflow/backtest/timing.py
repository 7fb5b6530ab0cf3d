"""When a headline can be traded, which return it predicts, and leakage checks.

The timing rule, enforced here and nowhere else:

- A headline stamped at time t is acted on at the first market close strictly
  after t (close = ``close_time`` on a trading day; a date-only stamp, i.e.
  midnight, is acted on at that day's close). That day is its *decision day* D.
- The position taken at close(D) earns the return close(D) → close(D+1), the next
  trading day: the *label* a model predicts and the return the strategy books.
- Every feature value carries ``available_at``, when its information became
  known. A value known after close(D) uses information from inside (or after) the
  return it predicts: `check_timing` refuses it.
- A value mis-stamped as early can still leak. `leakage_scan` flags features
  whose association with the predicted return is too strong to be news (by
  default |Spearman ρ| > 0.5; a headline-sentiment signal of p = 0.6 gives ~0.15).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class TimingError(ValueError):
    """A feature uses information from at or after the return it predicts."""


def close_times(days: pd.DatetimeIndex, close_time: str) -> pd.DatetimeIndex:
    """Timestamps of the closes of trading `days` (e.g. close_time="16:00")."""
    return pd.DatetimeIndex(days) + pd.Timedelta(close_time + ":00")


def decision_days(
    timestamps: pd.Series, trading_days: pd.DatetimeIndex, close_time: str
) -> pd.Series:
    """Decision day of each timestamp: the first trading day closing after it.

    Returns NaT where no trading day with a following day remains (the last
    trading day has no next-day return to earn).
    """
    days = pd.DatetimeIndex(trading_days).sort_values()
    closes = close_times(days, close_time)
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps))
    # Midnight means "date only": treat it as known before that day's close.
    i = closes.searchsorted(ts, side="right")
    ok = i < len(days) - 1
    out = np.full(len(ts), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[ok] = days.to_numpy()[i[ok]]
    return pd.Series(out, index=timestamps.index, name="decision_day")


def next_day_returns(closes: pd.DataFrame) -> pd.DataFrame:
    """[days, tickers] return earned from close(D) to close(D+1), indexed by D."""
    return closes.shift(-1) / closes - 1.0


def check_timing(
    available_at: pd.Series, decision_day: pd.Series, close_time: str, name: str
) -> None:
    """Refuse feature values known after the close of their decision day."""
    entry = pd.DatetimeIndex(decision_day) + pd.Timedelta(close_time + ":00")
    late = np.asarray(pd.DatetimeIndex(available_at) > entry)
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise TimingError(
            f"feature {name!r}: {int(late.sum())} value(s) known after the position "
            f"is taken, e.g. available_at={pd.DatetimeIndex(available_at)[i]} > "
            f"entry close {entry[i]}; it would use the return it predicts"
        )


def price_feature(closes: pd.DataFrame, lag: int, close_time: str) -> pd.DataFrame:
    """Daily return `lag` days before the decision day, stamped honestly.

    lag=0: the decision day's own return close(D-1) → close(D), known at close(D).
    lag=-1 would be tomorrow's return, known at close(D+1): `check_timing`
    refuses it. Returns a long frame: decision_day, ticker, value, available_at.
    """
    days = closes.index
    ret = (closes / closes.shift(1) - 1.0).shift(lag)
    known = pd.Series(close_times(days, close_time), index=days).shift(lag)
    long = ret.stack(future_stack=True).rename("value").reset_index()
    long.columns = ["decision_day", "ticker", "value"]
    long["available_at"] = known.reindex(long["decision_day"]).to_numpy()
    return long.dropna(ignore_index=True)


def leakage_scan(
    features: pd.DataFrame, target: pd.Series, max_abs_corr: float
) -> dict[str, float]:
    """Columns whose |Spearman ρ| with the predicted return exceeds the bound.

    Real news predicts next-day returns weakly; a feature that nearly reproduces
    them almost surely contains them. Returns {column: ρ} for the flagged ones.
    """
    ranks = features.rank()
    target_rank = target.rank()
    flagged = {}
    for column in features.columns:
        if ranks[column].std() == 0:
            continue
        rho = float(ranks[column].corr(target_rank))
        if abs(rho) > max_abs_corr:
            flagged[column] = rho
    return flagged
