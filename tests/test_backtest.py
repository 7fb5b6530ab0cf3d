"""Backtest leakage guards: planted signal found, placebo not, look-ahead refused,
metrics equal empyrical's; plus loaders, planted news and walk-forward purging."""

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from saeflow.backtest.config import BacktestConfig
from saeflow.backtest.market_data import (
    DataError,
    load_djia_news,
    load_headlines,
    load_prices,
    offline_prices,
)
from saeflow.backtest.metrics import deflated_sharpe, expected_max_sharpe, performance
from saeflow.backtest.news import build_planted_news
from saeflow.backtest.run import build_panel, run_backtest
from saeflow.backtest.timing import TimingError, decision_days, price_feature
from saeflow.backtest.walkforward import walk_forward_folds

TICKERS = ["AAA", "BBB", "CCC"]


def random_closes(n_days: int = 900, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2015-01-02", periods=n_days)
    rets = rng.normal(0.0003, 0.015, size=(n_days, len(TICKERS)))
    return pd.DataFrame(100 * np.cumprod(1 + rets, axis=0), days, TICKERS)


def planted_headlines(closes: pd.DataFrame, p: float, seed: int = 1) -> pd.DataFrame:
    """One headline per (day, ticker) with a noisy sentiment feature agreeing with
    the next-day return with probability p, and 5 noise features."""
    rng = np.random.default_rng(seed)
    fwd = (closes.shift(-1) / closes - 1).iloc[:-1].stack().reset_index()
    fwd.columns = ["timestamp", "ticker", "ret"]
    agree = rng.random(len(fwd)) < p
    fwd["sent"] = np.where((fwd["ret"] > 0) == agree, 1.0, -1.0)
    fwd["sent"] += rng.normal(0, 0.5, len(fwd))
    for j in range(5):
        fwd[f"L1_f{j}"] = rng.normal(size=len(fwd))
    return fwd.drop(columns="ret")


CFG = BacktestConfig.from_dict(
    {
        "model": {"classifiers": ["logistic"], "n_folds": 3},
        "metrics": {"bootstrap_reps": 300, "placebo_permutations": 5},
        "strategy": {"cost_bps": 1.0},
    }
)
COLUMNS = ["sent"] + [f"L1_f{j}" for j in range(5)]


def backtest(p: float):
    closes = random_closes()
    panel = build_panel(
        planted_headlines(closes, p), COLUMNS, closes, "16:00", CFG.model
    )
    return run_backtest(panel, closes, None, CFG, seed=0)


def test_planted_signal_sharpe_interval_excludes_zero():
    metrics = backtest(0.6).metrics
    assert metrics["sharpe_interval"]["low"] > 0
    assert metrics["placebo"]["p_value"] <= 1 / 6  # best of 5 placebos + itself


def test_placebo_sharpe_interval_covers_zero():
    interval = backtest(0.5).metrics["sharpe_interval"]
    assert interval["low"] < 0 < interval["high"]


def test_feature_from_tomorrows_return_is_refused_by_its_timestamp():
    closes = random_closes(200)
    tomorrow = price_feature(closes, lag=-1, close_time="16:00")
    with pytest.raises(TimingError, match="tomorrow"):
        build_panel(
            planted_headlines(closes, 0.5),
            COLUMNS,
            closes,
            "16:00",
            CFG.model,
            extra={"tomorrow": tomorrow},
        )
    today = price_feature(closes, lag=0, close_time="16:00")
    panel = build_panel(
        planted_headlines(closes, 0.5),
        COLUMNS,
        closes,
        "16:00",
        CFG.model,
        extra={"today": today},
    )
    assert "today" in panel.columns


def test_feature_from_tomorrows_return_is_flagged_when_misdated():
    closes = random_closes(300)
    news = planted_headlines(closes, 0.5)
    fwd = closes.shift(-1) / closes - 1
    # Smuggled in with the headline's own (early) timestamp: only the scan sees it.
    news["leak"] = [
        fwd.at[d, t] for d, t in zip(news["timestamp"], news["ticker"], strict=True)
    ]
    with pytest.raises(TimingError, match="leak"):
        build_panel(news, [*COLUMNS, "leak"], closes, "16:00", CFG.model)
    flag = BacktestConfig.from_dict({"model": {"on_leak": "flag"}}).model
    panel = build_panel(news, [*COLUMNS, "leak"], closes, "16:00", flag)
    assert set(panel.leakage) == {"leak"} and panel.leakage["leak"] > 0.9


def test_headline_after_the_close_trades_the_next_day():
    days = pd.bdate_range("2020-01-06", periods=4)
    stamps = pd.Series(
        pd.to_datetime(
            ["2020-01-06", "2020-01-06 15:59", "2020-01-06 16:00", "2020-01-09 10:00"],
            format="mixed",
        )
    )
    got = decision_days(stamps, days, "16:00")
    assert list(got[:3]) == [days[0], days[0], days[1]]
    assert pd.isna(got[3])  # the last day has no next-day return


def test_walk_forward_training_labels_never_reach_test_returns():
    day_index = np.repeat(np.arange(100), 2)
    for embargo in (0, 1, 3):
        for fold in walk_forward_folds(day_index, 4, 0.3, embargo):
            last_label_day = day_index[fold.train].max() + 1
            first_test_return_day = day_index[fold.test].min() + 1
            assert last_label_day <= first_test_return_day - 1 - embargo


def test_metrics_equal_empyrical_on_hand_made_series():
    net = pd.Series(
        [0.01, -0.02, 0.015, 0.0, 0.03, -0.01, 0.005, -0.004],
        index=pd.bdate_range("2021-01-04", periods=8),
    )
    ones = pd.Series(1.0, index=net.index)
    got = performance(net, ones * 0.5, ones)
    assert got["total_return"] == pytest.approx(np.prod(1 + net) - 1)
    assert got["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(252))
    assert got["sharpe"] == pytest.approx(ep.sharpe_ratio(net))
    assert got["sortino"] == pytest.approx(ep.sortino_ratio(net))
    assert got["calmar"] == pytest.approx(ep.calmar_ratio(net))
    assert got["max_drawdown"] == pytest.approx(ep.max_drawdown(net))
    equity = np.cumprod(1 + net.to_numpy())
    assert got["max_drawdown"] == pytest.approx(
        (equity / np.maximum.accumulate(equity) - 1).min()
    )
    assert got["annual_return"] == pytest.approx(ep.annual_return(net))
    assert got["annual_volatility"] == pytest.approx(ep.annual_volatility(net))
    assert got["win_rate"] == pytest.approx(4 / 8)
    assert got["turnover_annual"] == pytest.approx(0.5 * 252)


def test_deflated_sharpe_shrinks_with_more_trials():
    rng = np.random.default_rng(0)
    net = pd.Series(rng.normal(0.001, 0.01, 500))
    one = deflated_sharpe(net, [0.1], 1, null_variance=0.002)
    many = deflated_sharpe(net, [0.1], 50, null_variance=0.002)
    assert expected_max_sharpe(0.002, 1) == 0.0
    assert one["deflated_sharpe_ratio"] == pytest.approx(
        one["probabilistic_sharpe_ratio"]
    )
    assert many["deflated_sharpe_ratio"] < one["deflated_sharpe_ratio"]


@pytest.mark.parametrize("p", [0.7, 0.5])
def test_planted_news_agrees_with_next_day_return_at_rate_p(p):
    news = build_planted_news(random_closes(), 3000, p, 0.3, seed=0)
    directional = news.dropna(subset=["truth_agrees"])
    assert directional["truth_agrees"].mean() == pytest.approx(p, abs=0.03)
    bullish = directional["label"] == "bullish"
    agree = bullish == (directional["truth_next_return"] > 0)
    assert (agree == directional["truth_agrees"].astype(bool)).all()
    assert (news["label"] == "neutral").mean() == pytest.approx(0.3, abs=0.03)


def test_offline_prices_ship_the_documented_tickers():
    prices = offline_prices(["MSFT", "AMZN", "NVDA", "SP500"], "2017-01-03", None)
    ranges = prices.groupby("ticker")["date"].agg(["min", "max"])
    assert (ranges["min"] == pd.Timestamp("2017-01-03")).all()
    assert ranges.loc["MSFT", "max"] == pd.Timestamp("2017-11-10")
    assert ranges.loc["SP500", "max"] == pd.Timestamp("2018-12-31")
    with pytest.raises(DataError, match="XYZ"):
        offline_prices(["XYZ"])


def test_loaders_name_file_and_column(tmp_path):
    path = tmp_path / "news.csv"
    pd.DataFrame({"time": ["2020-01-02"], "ticker": ["A"], "text": ["x"]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"news\.csv.*'timestamp'"):
        load_headlines(path)
    assert len(load_headlines(path, timestamp_column="time")) == 1
    prices = tmp_path / "prices.parquet"
    pd.DataFrame({"date": ["2020-01-02"], "ticker": ["A"], "close": [1.0]}).to_parquet(
        prices
    )
    with pytest.raises(DataError, match=r"prices\.parquet.*'adj_close'"):
        load_prices(prices)
    assert load_prices(prices, price_column="close")["adj_close"].tolist() == [1.0]


def test_djia_layout_loader(tmp_path):
    path = tmp_path / "Combined_News_DJIA.csv"
    frame = pd.DataFrame(
        {
            "Date": ["2008-08-08", "2008-08-11"],
            "Label": [0, 1],
            **{f"Top{i}": [f"b'day one {i}'", f"day two {i}"] for i in range(1, 26)},
        }
    )
    frame.loc[1, "Top25"] = None
    frame.to_csv(path, index=False)
    news = load_djia_news(path)
    assert len(news) == 49
    assert news["text"].iloc[0] == "day one 1"  # byte-string repr stripped
    assert set(news["ticker"]) == {"DJIA"}
    assert news["label_same_day"].tolist()[:2] == [0, 0]
    with pytest.raises(DataError, match="Top1"):
        pd.DataFrame({"Date": ["2008-08-08"]}).to_csv(tmp_path / "bad.csv")
        load_djia_news(tmp_path / "bad.csv")


def test_headline_features_pool_sae_features_and_sentiment(tmp_path, tiny_bert):
    from transformers import AutoTokenizer, BertForSequenceClassification

    from saeflow.backtest.headline_features import (
        headline_features,
        parse_feature_column,
    )
    from saeflow.sae.model import SAEShape, TopKSAE

    model = BertForSequenceClassification.from_pretrained(
        tiny_bert,
        num_labels=3,
        id2label={0: "bearish", 1: "bullish", 2: "neutral"},
        label2id={"bearish": 0, "bullish": 1, "neutral": 2},
    )
    model.save_pretrained(tmp_path / "clf")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "clf")
    TopKSAE(SAEShape(d_in=32, n_latents=64, k=4)).save(tmp_path / "sae")
    texts = ["Nvidia shares jump 4%", "Amazon cut to sell", "Microsoft keeps dividend"]
    feats = headline_features(
        texts, str(tmp_path / "clf"), {1: tmp_path / "sae"}, {1: [3, 10, 40]}
    )
    one_by_one = headline_features(
        texts,
        str(tmp_path / "clf"),
        {1: tmp_path / "sae"},
        {1: [3, 10, 40]},
        batch_size=1,
    )
    assert list(feats.columns) == [
        "L1_f3",
        "L1_f10",
        "L1_f40",
        "sent_bearish",
        "sent_bullish",
        "sent_neutral",
    ]
    assert parse_feature_column("L1_f40") == (1, 40)
    sent = feats.filter(like="sent_").to_numpy()
    np.testing.assert_allclose(sent.sum(1), 1.0, rtol=1e-5)
    assert (feats.to_numpy() >= 0).all()
    # Padding in a batch must not change a headline's pooled features.
    np.testing.assert_allclose(feats.to_numpy(), one_by_one.to_numpy(), atol=1e-5)


def test_default_config_plans_both_backtest_scenarios(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(root / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(root / "config.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "results/backtest/signal/metrics.json" in out
    assert "results/backtest/placebo/metrics.json" in out
