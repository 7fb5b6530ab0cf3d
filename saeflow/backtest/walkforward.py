"""Walk-forward prediction of next-day return signs with purge and embargo.

The trading days that carry samples are cut into an initial training span and
`n_folds` consecutive test blocks. Each block's model is fit on every earlier
sample whose label is known before the block starts (an expanding window):
a sample decided on day d has the label "return of day d+1", so it may train the
block starting at decision day a only if d + 1 <= a - embargo. With embargo = 0
the last training label is the return of the test block's first decision day,
known at the close where the first test position is taken; each embargo day
widens the gap by one trading day. No training label overlaps a test return day.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

Classifier = Literal["logistic", "gradient_boosting"]


class Fold(NamedTuple):
    """One walk-forward step."""

    train: np.ndarray
    """Row indices fit on (labels all known before the test block)."""
    test: np.ndarray
    """Row indices predicted (one consecutive block of decision days)."""


def walk_forward_folds(
    day_index: np.ndarray, n_folds: int, min_train_fraction: float, embargo_days: int
) -> list[Fold]:
    """Expanding-window folds over samples with decision-day positions `day_index`.

    day_index: [n] position of each sample's decision day in the trading calendar.
    """
    days = np.unique(day_index)
    first_test = int(np.ceil(min_train_fraction * len(days)))
    if n_folds < 1 or len(days) - first_test < n_folds:
        raise ValueError(
            f"backtest.model: {len(days)} decision days cannot hold {n_folds} test "
            f"folds after a {min_train_fraction:.0%} initial training span"
        )
    folds = []
    for block in np.array_split(days[first_test:], n_folds):
        start, end = block[0], block[-1]
        train = np.flatnonzero(day_index + 1 <= start - embargo_days)
        test = np.flatnonzero((day_index >= start) & (day_index <= end))
        if len(train) == 0:
            raise ValueError(
                f"backtest.model: fold starting at day {start} has no data"
            )
        folds.append(Fold(train, test))
    return folds


def make_classifier(name: Classifier, seed: int) -> ClassifierMixin:
    """A fresh scikit-learn classifier by name."""
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.05, max_depth=3, random_state=seed
        )
    raise ValueError(f"backtest.model.classifiers: unknown classifier {name!r}")


class WalkForward(NamedTuple):
    """Out-of-sample predictions and the fitted model of each fold."""

    proba_up: np.ndarray
    """[n] P(next-day return > 0) for test rows; NaN for rows never tested."""
    models: list[ClassifierMixin]
    """One fitted model per fold."""


def walk_forward_predict(
    X: np.ndarray,
    up: np.ndarray,
    folds: list[Fold],
    make_model: Callable[[], ClassifierMixin],
) -> WalkForward:
    """Fit on each fold's training rows and predict its test rows.

    X: [n, n_features]; up: [n] bool, next-day return > 0.
    """
    proba = np.full(len(X), np.nan)
    models = []
    for fold in folds:
        model = clone(make_model())
        if len(np.unique(up[fold.train])) < 2:
            proba[fold.test] = float(up[fold.train].mean())
        else:
            model.fit(X[fold.train], up[fold.train])
            proba[fold.test] = model.predict_proba(X[fold.test])[:, 1]
        models.append(model)
    return WalkForward(proba, models)


def fold_importance(
    result: WalkForward,
    X: np.ndarray,
    up: np.ndarray,
    folds: list[Fold],
    columns: list[str],
    n_repeats: int,
    seed: int,
) -> pd.DataFrame:
    """Permutation importance: drop in test ROC AUC when one feature's values are
    shuffled within a fold's test rows (Breiman 2001), averaged over `n_repeats`
    shuffles and over folds weighted by test size.

    Columns feature, importance_mean, importance_std. All repeats of a feature go
    through one predict_proba call (rows stacked) to keep it fast.
    """
    rng = np.random.default_rng(seed)
    means, stds, weights = [], [], []
    for model, fold in zip(result.models, folds, strict=True):
        y = up[fold.test]
        if not hasattr(model, "classes_") or len(np.unique(y)) < 2:
            continue
        x = X[fold.test]
        base = roc_auc_score(y, model.predict_proba(x)[:, 1])
        n = len(x)
        drops = np.empty((x.shape[1], n_repeats))
        for j in range(x.shape[1]):
            stacked = np.tile(x, (n_repeats, 1))  # (repeats * n, d)
            for r in range(n_repeats):
                stacked[r * n : (r + 1) * n, j] = x[rng.permutation(n), j]
            p = model.predict_proba(stacked)[:, 1].reshape(n_repeats, n)
            drops[j] = [base - roc_auc_score(y, p[r]) for r in range(n_repeats)]
        means.append(drops.mean(1))
        stds.append(drops.std(1))
        weights.append(len(fold.test))
    if not weights:
        return pd.DataFrame(columns=["feature", "importance_mean", "importance_std"])
    return pd.DataFrame(
        {
            "feature": columns,
            "importance_mean": np.average(means, axis=0, weights=weights),
            "importance_std": np.average(stds, axis=0, weights=weights),
        }
    ).sort_values("importance_mean", ascending=False, ignore_index=True)
