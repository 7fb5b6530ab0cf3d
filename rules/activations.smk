rule cache_activations:
    input:
        corpus="results/corpus/{corpus}.parquet",
        model=model_input,
    output:
        acts=expand(
            "results/activations/{{model}}/layer_{layer}/{{corpus}}.h5",
            layer=CACHED_LAYERS,
        ),
        report="results/activations/{model}/{corpus}_report.json",
    log:
        "logs/activations/{model}/{corpus}.log",
    benchmark:
        "benchmarks/activations/{model}/{corpus}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        ref=lambda wc: model_ref(wc.model),
        model_dtype=lambda wc: config["models"][wc.model]["dtype"],
        cfg=Tracked(ACT_CFG),
        layers=CACHED_LAYERS,
        device=config["device"],
    script:
        "../scripts/cache_activations.py"
