# From SAE features of the fine-tuned model to a trading signal: walk-forward
# models, a strategy with costs, and metrics beside the chance they are luck.


rule build_backtest_prices:
    output:
        prices="results/backtest/prices.parquet",
    log:
        "logs/backtest/prices.log",
    threads: 1
    params:
        cfg=Tracked(BACKTEST_CFG.prices),
    script:
        "../scripts/build_backtest_prices.py"


rule build_backtest_news:
    input:
        prices="results/backtest/prices.parquet",
    output:
        news="results/backtest/{scenario}/news.parquet",
    log:
        "logs/backtest/{scenario}/news.log",
    threads: 1
    params:
        cfg=Tracked(BACKTEST_CFG.news),
        tickers=BACKTEST_CFG.prices.tickers,
        seed=config["seed"],
    script:
        "../scripts/build_backtest_news.py"


rule compute_headline_features:
    input:
        news="results/backtest/{scenario}/news.parquet",
        model=backtest_model_input(),
        saes=ancient(
            expand("results/sae/finetuned/layer_{layer}/sae", layer=BACKTEST_LAYERS)
        ),
        sae_digests=expand(
            "results/sae/finetuned/layer_{layer}/sae.sha256", layer=BACKTEST_LAYERS
        ),
        specialization=expand(
            "results/features/finetuned/layer_{layer}/specialization.parquet",
            layer=BACKTEST_LAYERS,
        ),
    output:
        features="results/backtest/{scenario}/features.parquet",
    log:
        "logs/backtest/{scenario}/features.log",
    benchmark:
        "benchmarks/backtest/{scenario}/features.tsv"
    threads: 1
    params:
        model_ref=model_ref("finetuned"),
        layers=BACKTEST_LAYERS,
        cfg=Tracked(BACKTEST_CFG.features),
        exclude_special=ACT_CFG.special_tokens == "exclude",
        device=config["device"],
    script:
        "../scripts/compute_headline_features.py"


rule run_backtest:
    input:
        features="results/backtest/{scenario}/features.parquet",
        prices="results/backtest/prices.parquet",
        labels=backtest_labels_input(),
    output:
        metrics=report(
            "results/backtest/{scenario}/metrics.json",
            caption="../report/backtest_metrics.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "table": "metrics"},
        ),
        equity="results/backtest/{scenario}/equity.csv",
        trades="results/backtest/{scenario}/trades.csv",
        predictions="results/backtest/{scenario}/predictions.csv",
        importance=report(
            "results/backtest/{scenario}/importance.csv",
            caption="../report/backtest_importance.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "table": "feature importance"},
        ),
        equity_png=report(
            "results/backtest/{scenario}/equity.png",
            caption="../report/backtest_equity.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "figure": "equity"},
        ),
        drawdown_png=report(
            "results/backtest/{scenario}/drawdown.png",
            caption="../report/backtest_drawdown.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "figure": "drawdown"},
        ),
        rolling_png=report(
            "results/backtest/{scenario}/rolling_sharpe.png",
            caption="../report/backtest_rolling_sharpe.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "figure": "rolling Sharpe"},
        ),
        placebo_png=report(
            "results/backtest/{scenario}/placebo.png",
            caption="../report/backtest_placebo.rst",
            category="Backtest",
            labels={"scenario": "{scenario}", "figure": "placebo"},
        ),
    log:
        "logs/backtest/{scenario}/run.log",
    benchmark:
        "benchmarks/backtest/{scenario}/run.tsv"
    threads: 1
    params:
        cfg=Tracked(BACKTEST_CFG),
        seed=config["seed"],
    script:
        "../scripts/run_backtest.py"
