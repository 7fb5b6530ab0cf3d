rule build_corpus:
    output:
        corpus="results/corpus/{corpus}.parquet",
    log:
        "logs/corpus/{corpus}.log",
    params:
        cfg=lambda wc: CORPUS_CFG[wc.corpus],
        seed=config["seed"],
    threads: 1
    script:
        "../scripts/build_corpus.py"
