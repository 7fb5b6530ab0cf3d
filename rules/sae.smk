rule train_sae:
    input:
        acts=expand(
            "results/activations/{{model}}/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
    output:
        sae=directory("results/sae/{model}/layer_{layer}/sae"),
        metrics="results/sae/{model}/layer_{layer}/metrics.json",
        curve="results/sae/{model}/layer_{layer}/training_curve.csv",
        variants=directory("results/sae/{model}/layer_{layer}/variants"),
        figure=report(
            "results/sae/{model}/layer_{layer}/training_curve.png",
            caption="../report/training_curve.rst",
            category="SAE training",
            labels={"model": "{model}", "layer": "{layer}"},
        ),
    log:
        "logs/sae/{model}/layer_{layer}.log",
    benchmark:
        "benchmarks/sae/{model}/layer_{layer}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        cfg=Tracked(SAE_CFG),
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/train_sae.py"
