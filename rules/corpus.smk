rule build_corpus:
    output:
        corpus="results/corpus/{corpus}.parquet",
    log:
        "logs/corpus/{corpus}.log",
    # First: the fine-tuning that everything about the fine-tuned model waits for
    # needs the domain corpus.
    priority: 10
    threads: 1
    params:
        cfg=lambda wc: Tracked(CORPUS_CFG[wc.corpus]),
        seed=config["seed"],
    script:
        "../scripts/build_corpus.py"
