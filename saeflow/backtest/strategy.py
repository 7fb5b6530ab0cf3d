"""Daily positions from predictions, their returns after costs, and benchmarks.

Timing (see `saeflow.backtest.timing`): the weight set for decision day D is taken at
close(D) and earns close(D) → close(D+1); each row of the result is indexed by
the day the return is realised, D+1. Costs are charged on the weight traded at
close(D) (|w_D − w_{D−1}| summed over tickers, times `cost_bps` per side) and
booked in the same row. Tickers are equally weighted: each has 1/N of capital,
long (+1/N), short (−1/N, long-short only) or flat; a ticker with no headline on
a decision day is flat that day.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Mode = Literal["long_short", "long_flat"]


def target_weights(
    signals: pd.DataFrame, days: pd.DatetimeIndex, tickers: list[str], mode: Mode
) -> pd.DataFrame:
    """[days, tickers] weights from per-(decision_day, ticker) P(up).

    signals: columns decision_day, ticker, proba_up (one row per pair).
    """
    side = np.where(signals["proba_up"] > 0.5, 1.0, -1.0 if mode == "long_short" else 0)
    side = np.where(signals["proba_up"] == 0.5, 0.0, side)
    wide = (
        pd.DataFrame(
            {"day": signals["decision_day"], "ticker": signals["ticker"], "w": side}
        )
        .pivot(index="day", columns="ticker", values="w")
        .reindex(index=days, columns=tickers)
        .fillna(0.0)
    )
    return wide / len(tickers)


def strategy_returns(
    weights: pd.DataFrame, next_returns: pd.DataFrame, cost_bps: float
) -> pd.DataFrame:
    """Gross, cost and net return of the weights, indexed by realisation day.

    weights: [decision days, tickers]; next_returns: [days, tickers] return from
    close(D) to close(D+1) indexed by D (`saeflow.backtest.timing.next_day_returns`).
    """
    fwd = next_returns.reindex(index=weights.index, columns=weights.columns)
    if fwd.isna().to_numpy().any():
        raise ValueError("a decision day has no next-day return (last day of prices?)")
    traded = weights.diff().fillna(weights).abs().sum(axis=1)
    gross = (weights * fwd).sum(axis=1)
    cost = traded * cost_bps / 1e4
    realised = _next_days(weights.index, next_returns.index)
    return pd.DataFrame(
        {
            "decision_day": weights.index,
            "gross": gross.to_numpy(),
            "cost": cost.to_numpy(),
            "net": (gross - cost).to_numpy(),
            "gross_exposure": weights.abs().sum(axis=1).to_numpy(),
            "turnover": traded.to_numpy(),
        },
        index=pd.DatetimeIndex(realised, name="date"),
    )


def _next_days(days: pd.DatetimeIndex, calendar: pd.DatetimeIndex) -> np.ndarray:
    pos = calendar.get_indexer(days)
    return calendar.to_numpy()[pos + 1]


def trades(weights: pd.DataFrame) -> pd.DataFrame:
    """Every weight change: date (decision close), ticker, from, to, side."""
    before = weights.shift(1).fillna(0.0)
    changed = (weights != before).stack()
    rows = changed[changed].index
    out = pd.DataFrame(
        {
            "date": rows.get_level_values(0),
            "ticker": rows.get_level_values(1),
            "weight_from": [before.at[d, t] for d, t in rows],
            "weight_to": [weights.at[d, t] for d, t in rows],
        }
    )
    out["side"] = np.where(out["weight_to"] > out["weight_from"], "buy", "sell")
    return out


def buy_and_hold(
    next_returns: pd.DataFrame, days: pd.DatetimeIndex, columns: list[str]
) -> pd.Series:
    """Equal-weight, daily-rebalanced buy-and-hold of `columns`, by realisation day."""
    ret = next_returns.reindex(index=days)[columns].mean(axis=1)
    return pd.Series(
        ret.to_numpy(), index=pd.DatetimeIndex(_next_days(days, next_returns.index))
    )
