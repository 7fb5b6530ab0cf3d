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
    # On the critical path: everything about the fine-tuned model waits for it.
    priority: 10
    threads: 1
    resources:
        mem_mb=4000,
    params:
        base=model_ref("base"),
        cfg=Tracked(FINETUNE_CFG),
        seed=config["seed"],
    script:
        "../scripts/finetune_model.py"
