"""Performance metrics of a daily return series, and whether they could be luck.

The usual numbers come from empyrical (252 periods a year, zero risk-free rate).
Beside them: the deflated Sharpe ratio for the number of configurations tried,
a stationary-bootstrap interval for the Sharpe ratio, and the placebo p-value
(where the strategy's Sharpe falls among Sharpes of shuffled headline–return
pairings).
"""

from __future__ import annotations

from collections.abc import Sequence

import empyrical as ep
import numpy as np
import pandas as pd
from arch.bootstrap import StationaryBootstrap
from scipy import stats

PERIODS = 252
EULER_GAMMA = 0.5772156649015329


def performance(
    net: pd.Series, turnover: pd.Series, exposure: pd.Series
) -> dict[str, float]:
    """empyrical's metrics of daily `net` returns, plus win rate and turnover.

    Win rate: share of days with a position whose net return is positive.
    Turnover: capital traded per day (sum of |weight change|), mean and annual.
    """
    active = exposure.to_numpy() > 0
    return {
        "total_return": float(ep.cum_returns_final(net)),
        "annual_return": float(ep.annual_return(net, annualization=PERIODS)),
        "annual_volatility": float(ep.annual_volatility(net, annualization=PERIODS)),
        "sharpe": float(ep.sharpe_ratio(net, annualization=PERIODS)),
        "sortino": float(ep.sortino_ratio(net, annualization=PERIODS)),
        "calmar": float(ep.calmar_ratio(net, annualization=PERIODS)),
        "max_drawdown": float(ep.max_drawdown(net)),
        "win_rate": float((net.to_numpy()[active] > 0).mean()) if active.any() else 0.0,
        "turnover_daily": float(turnover.mean()),
        "turnover_annual": float(turnover.mean() * PERIODS),
        "n_days": int(len(net)),
        "n_active_days": int(active.sum()),
    }


def annual_sharpe(returns: np.ndarray) -> float:
    """Annualised Sharpe ratio as empyrical computes it (mean / std, ddof=1)."""
    return float(ep.sharpe_ratio(returns, annualization=PERIODS))


def sharpe_interval(
    returns: pd.Series, reps: int, block_length: float, level: float, seed: int
) -> tuple[float, float]:
    """Percentile interval of the annualised Sharpe under the stationary bootstrap
    (Politis & Romano 1994: resampled blocks of geometric mean length
    `block_length` keep short-range dependence)."""
    boot = StationaryBootstrap(block_length, returns.to_numpy(), seed=seed)
    draws = boot.apply(lambda x: np.array([annual_sharpe(x)]), reps)[:, 0]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def expected_max_sharpe(trial_variance: float, n_trials: int) -> float:
    """SR0: the Sharpe the best of `n_trials` unskilled trials reaches by luck.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", eq. (2):
        SR0 = sqrt(V[SR_n]) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))
    with γ the Euler–Mascheroni constant and V[SR_n] the variance of the trials'
    (per-period) Sharpe ratios. One trial: SR0 = 0.
    """
    if n_trials <= 1:
        return 0.0
    z = (1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials) + EULER_GAMMA * (
        stats.norm.ppf(1 - 1 / (n_trials * np.e))
    )
    return float(np.sqrt(trial_variance) * z)


def deflated_sharpe(
    returns: pd.Series,
    trial_sharpes: Sequence[float],
    n_trials: int,
    null_variance: float,
) -> dict[str, float]:
    """Probability that the true Sharpe exceeds what `n_trials` tries give by luck.

    Bailey & López de Prado (2014), eq. (1)-(2):
        DSR = Φ( (SR̂ − SR0) sqrt(T − 1) / sqrt(1 − γ̂3 SR̂ + (γ̂4 − 1)/4 SR̂²) )
    SR̂ per period (not annualised), γ̂3 skewness, γ̂4 kurtosis (3 for a normal),
    T observations. V[SR_n] is the variance of `trial_sharpes` (per period) when
    there are at least two, else `null_variance` (e.g. of the placebo Sharpes).
    """
    x = returns.to_numpy()
    t = len(x)
    sr = float(x.mean() / x.std(ddof=1)) if x.std(ddof=1) > 0 else 0.0
    skew = float(stats.skew(x))
    kurt = float(stats.kurtosis(x, fisher=False))
    trials = np.asarray(trial_sharpes, dtype=float)
    variance = float(trials.var(ddof=1)) if len(trials) >= 2 else null_variance
    sr0 = expected_max_sharpe(variance, n_trials)
    denom = np.sqrt(max(1 - skew * sr + (kurt - 1) / 4 * sr**2, 1e-12))
    z = (sr - sr0) * np.sqrt(t - 1) / denom
    return {
        "deflated_sharpe_ratio": float(stats.norm.cdf(z)),
        "probabilistic_sharpe_ratio": float(
            stats.norm.cdf(sr * np.sqrt(t - 1) / denom)
        ),
        "sharpe_per_period": sr,
        "expected_max_sharpe_per_period": sr0,
        "trial_sharpe_variance": variance,
        "n_trials": n_trials,
        "skewness": skew,
        "kurtosis": kurt,
        "n_observations": t,
    }


def placebo_p_value(sharpe: float, placebo: Sequence[float]) -> float:
    """Share of placebo Sharpes at least as high, counting the real one (+1/+1)."""
    placebo = np.asarray(placebo, dtype=float)
    return float((1 + (placebo >= sharpe).sum()) / (1 + len(placebo)))
