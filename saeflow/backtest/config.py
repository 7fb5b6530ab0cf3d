"""Typed configuration of the backtest stage (the `backtest` block of config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Self

from saeflow.workflow.config import ConfigError, _FromDict


@dataclass(frozen=True)
class NewsConfig(_FromDict):
    """Where dated headlines come from."""

    source: Literal["synthetic", "local", "djia"] = "synthetic"
    """synthetic: planted-signal headlines; local: a headline file; djia: a file in
    the Combined_News_DJIA layout."""
    path: str | None = None
    """local/djia: CSV / TSV / Parquet file."""
    timestamp_column: str = "timestamp"
    """local: column with the publication time (date or date and time)."""
    ticker_column: str = "ticker"
    """local: column with the ticker the headline is about."""
    text_column: str = "text"
    """local: column with the headline."""
    djia_ticker: str = "DJIA"
    """djia: ticker the market-wide headlines are about (must be in the prices)."""
    n_headlines: int = 2000
    """synthetic: headlines to generate."""
    neutral_fraction: float = 0.3
    """synthetic: share of neutral headlines (no signal)."""
    planted: dict[str, float] = field(
        default_factory=lambda: {"signal": 0.7, "placebo": 0.5}
    )
    """synthetic: scenario name → p, the probability that a headline's sentiment
    agrees with its ticker's next-day return (0.5: placebo)."""

    def __post_init__(self) -> None:
        if self.source != "synthetic" and not self.path:
            raise ConfigError(
                f"backtest.news.path is required for source={self.source}"
            )
        if self.source == "synthetic" and not self.planted:
            raise ConfigError("backtest.news.planted must name at least one scenario")
        for name, p in self.planted.items():
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"backtest.news.planted.{name}={p} not in [0, 1]")

    def scenarios(self) -> list[str]:
        """Backtests run: one per planted p, or one ("news") for real headlines."""
        return list(self.planted) if self.source == "synthetic" else ["news"]


@dataclass(frozen=True)
class PriceConfig(_FromDict):
    """Daily prices of the traded tickers and of the benchmark."""

    source: Literal["offline", "local"] = "offline"
    """offline: prices shipped by installed packages; local: a long prices file."""
    path: str | None = None
    """local: CSV / TSV / Parquet with date, ticker, adjusted close."""
    date_column: str = "date"
    ticker_column: str = "ticker"
    price_column: str = "adj_close"
    tickers: list[str] = field(default_factory=lambda: ["MSFT", "AMZN", "NVDA"])
    """Tickers traded (equally weighted)."""
    benchmark: str | None = "SP500"
    """Ticker of the buy-and-hold benchmark (None: equal-weight tickers only)."""
    start_date: str | None = "2013-01-02"
    end_date: str | None = "2017-11-10"
    close_time: str = "16:00"
    """Market close (local time of the timestamps); see saeflow.backtest.timing."""

    def __post_init__(self) -> None:
        if self.source == "local" and not self.path:
            raise ConfigError("backtest.prices.path is required for source=local")


@dataclass(frozen=True)
class HeadlineFeatureConfig(_FromDict):
    """Features per headline."""

    layers: list[int] | None = None
    """SAE layers used (None: the preset's layers, those SAEs are trained for)."""
    top_features: int = 32
    """Most domain-specialized features kept per layer."""
    pooling: Literal["mean", "max"] = "mean"
    """How token activations become one value per headline."""
    sentiment: bool = True
    """Add the fine-tuned classifier's class probabilities."""
    batch_size: int = 64
    max_length: int = 64


@dataclass(frozen=True)
class ModelConfig(_FromDict):
    """Walk-forward classifiers of the next-day return sign."""

    classifiers: list[Literal["logistic", "gradient_boosting"]] = field(
        default_factory=lambda: ["logistic", "gradient_boosting"]
    )
    """Every classifier run counts as a trial for the deflated Sharpe ratio."""
    primary: Literal["logistic", "gradient_boosting"] = "logistic"
    """The classifier whose strategy is reported, bootstrapped and placebo-tested."""
    n_folds: int = 5
    min_train_fraction: float = 0.3
    embargo_days: int = 1
    importance_repeats: int = 3
    max_abs_corr: float = 0.5
    """Leakage scan: features with |Spearman ρ| to the predicted return above this."""
    on_leak: Literal["refuse", "flag"] = "refuse"
    """refuse: stop with an error; flag: record in metrics.json and go on."""

    def __post_init__(self) -> None:
        if self.primary not in self.classifiers:
            raise ConfigError(
                f"backtest.model.primary={self.primary} is not in classifiers"
            )


@dataclass(frozen=True)
class StrategyConfig(_FromDict):
    mode: Literal["long_short", "long_flat"] = "long_short"
    cost_bps: float = 5.0
    """Transaction cost per side, in basis points of the capital traded."""


@dataclass(frozen=True)
class MetricsConfig(_FromDict):
    bootstrap_reps: int = 1000
    block_length: float = 10.0
    """Mean block length (days) of the stationary bootstrap."""
    ci_level: float = 0.95
    placebo_permutations: int = 100
    rolling_window: int = 126
    prior_trials: int = 0
    """Configurations tried before this one (on the same data): they count in the
    deflated Sharpe ratio's number of trials."""


@dataclass(frozen=True)
class BacktestConfig(_FromDict):
    """The `backtest` block: one sub-config per step."""

    activate: bool = True
    news: NewsConfig = field(default_factory=NewsConfig)
    prices: PriceConfig = field(default_factory=PriceConfig)
    features: HeadlineFeatureConfig = field(default_factory=HeadlineFeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "backtest: ") -> Self:
        d = dict(d or {})
        parts = {
            "news": NewsConfig,
            "prices": PriceConfig,
            "features": HeadlineFeatureConfig,
            "model": ModelConfig,
            "strategy": StrategyConfig,
            "metrics": MetricsConfig,
        }
        for key, kind in parts.items():
            d[key] = kind.from_dict(d.get(key), f"{where}{key}: ")
        return super().from_dict(d, where)
