rule finetune_model:
    input:
        corpus="results/corpus/domain.parquet",
    output:
        model=directory(FINETUNED_DIR),
        metrics="results/models/finetuned_metrics.json",
    log:
        "logs/models/finetune_model.log",
    benchmark:
        "benchmarks/models/finetune_model.tsv"
    params:
        base=model_ref("base"),
        cfg=FINETUNE_CFG,
        seed=config["seed"],
    threads: 2
    resources:
        mem_mb=4000,
    script:
        "../scripts/finetune_model.py"
