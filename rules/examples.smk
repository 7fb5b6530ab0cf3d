# Examples per SAE feature (top contexts, quantile samples, negatives), stored
# once for the labels stage and the viewer.
from saeflow.examples.config import ExampleConfig

EXAMPLE_CFG = ExampleConfig.from_dict(config["examples"], "examples: ")


rule collect_feature_examples:
    input:
        sae=ancient("results/sae/{model}/layer_{layer}/sae"),
        sae_digest="results/sae/{model}/layer_{layer}/sae.sha256",
        acts=expand(
            "results/activations/{{model}}/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        model=model_input,
    output:
        examples="results/examples/{model}/layer_{layer}/examples.parquet",
    log:
        "logs/examples/{model}/layer_{layer}.log",
    benchmark:
        "benchmarks/examples/{model}/layer_{layer}.tsv"
    wildcard_constraints:
        model=FEATURE_MODEL,
    # Labels wait for these; labeling is the longest job near the end of a run.
    priority: 5
    threads: 1
    resources:
        mem_mb=3000,
    params:
        ref=lambda wc: model_ref(wc.model),
        corpora=CORPORA,
        cfg=Tracked(EXAMPLE_CFG),
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/collect_feature_examples.py"
