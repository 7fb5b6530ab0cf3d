"""Backtest figures: equity vs benchmark, drawdown, rolling Sharpe, placebo."""

from __future__ import annotations

from pathlib import Path

import empyrical as ep
import numpy as np
import pandas as pd

from saeflow.workflow.plots import plt, save_figure

_BENCH = {
    "equity_bh_benchmark": "benchmark buy-and-hold",
    "equity_bh_universe": "tickers buy-and-hold (equal weight)",
}


def plot_equity(eq: pd.DataFrame, title: str, path: str | Path) -> None:
    """Growth of 1 for the strategy (net and gross of costs) and the benchmarks."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(eq.index, eq["equity_net"], label="strategy, net of costs", lw=1.6)
    ax.plot(eq.index, eq["equity_gross"], label="strategy, gross", lw=0.8, ls="--")
    for col, label in _BENCH.items():
        if col in eq.columns:
            ax.plot(eq.index, eq[col], label=label, lw=1.0)
    ax.set(ylabel="growth of 1", title=title)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    save_figure(fig, path)


def plot_drawdown(eq: pd.DataFrame, title: str, path: str | Path) -> None:
    """Drawdown of the strategy's net equity from its running peak."""
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.fill_between(eq.index, eq["drawdown"], 0, color="#c53030", alpha=0.5)
    ax.set(ylabel="drawdown", title=title)
    fig.autofmt_xdate()
    save_figure(fig, path)


def plot_rolling_sharpe(
    eq: pd.DataFrame, window: int, title: str, path: str | Path
) -> None:
    """Annualised Sharpe over a trailing window (empyrical.roll_sharpe_ratio)."""
    fig, ax = plt.subplots(figsize=(8, 3))
    for col, label in [("ret_net", "strategy, net"), ("ret_bh_benchmark", "benchmark")]:
        if col in eq.columns and len(eq) > window:
            roll = ep.roll_sharpe_ratio(eq[col], window=window)
            ax.plot(roll.index, roll, label=label)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel=f"Sharpe, trailing {window} days", title=title)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    save_figure(fig, path)


def plot_placebo(
    placebo: np.ndarray, sharpe: float, title: str, path: str | Path
) -> None:
    """Histogram of placebo Sharpes with the strategy's Sharpe marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(placebo):
        ax.hist(placebo, bins=30, color="#a0aec0", label="placebo (pairings shuffled)")
    ax.axvline(sharpe, color="#2b6cb0", lw=2, label=f"strategy {sharpe:.2f}")
    ax.set(xlabel="annualised Sharpe, net", ylabel="permutations", title=title)
    ax.legend(fontsize=8)
    save_figure(fig, path)
