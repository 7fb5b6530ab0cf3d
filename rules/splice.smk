# Spliced-in evaluation: each SAE's reconstruction replaces its layer inside its
# model on held-out texts (results/sae/.../spliced.json), and the base SAE goes
# into the fine-tuned model: does the base dictionary carry what the classifier
# uses? Both against the clean model and zero- and mean-ablated layers.
from saeflow.workflow.config import SpliceConfig

SPLICE_CFG = SpliceConfig.from_dict(config["splice"], "splice: ")


rule evaluate_spliced:
    input:
        sae=ancient("results/sae/{model}/layer_{layer}/sae"),
        sae_digest="results/sae/{model}/layer_{layer}/sae.sha256",
        cache="results/activations/{model}/layer_{layer}/domain.h5",
        corpus="results/corpus/domain.parquet",
        model=model_input,
    output:
        spliced=report(
            "results/sae/{model}/layer_{layer}/spliced.json",
            caption="../report/spliced.rst",
            category="SAE training",
            labels={"model": "{model}", "layer": "{layer}", "file": "spliced"},
        ),
    log:
        "logs/splice/{model}/layer_{layer}.log",
    benchmark:
        "benchmarks/splice/{model}/layer_{layer}.tsv"
    threads: 1
    params:
        ref=lambda wc: model_ref(wc.model),
        model_dtype=lambda wc: config["models"][wc.model]["dtype"],
        cfg=Tracked(SPLICE_CFG),
        finetune=Tracked(FINETUNE_CFG),
        act=Tracked(ACT_CFG),
        holdout_fraction=config["sae"]["holdout_fraction"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/evaluate_spliced.py"


# The base SAE's held-out texts (its own cache's tail) and the fine-tuned model.
rule evaluate_spliced_base_into_finetuned:
    input:
        sae=ancient("results/sae/base/layer_{layer}/sae"),
        sae_digest="results/sae/base/layer_{layer}/sae.sha256",
        cache="results/activations/base/layer_{layer}/domain.h5",
        corpus="results/corpus/domain.parquet",
        model=backtest_model_input(),
    output:
        spliced=report(
            "results/compare/layer_{layer}/spliced_base_into_finetuned.json",
            caption="../report/spliced_base_into_finetuned.rst",
            category=COMPARE_CAT,
            labels={"layer": "{layer}", "file": "base SAE spliced into fine-tuned"},
        ),
    log:
        "logs/splice/base_into_finetuned/layer_{layer}.log",
    benchmark:
        "benchmarks/splice/base_into_finetuned/layer_{layer}.tsv"
    threads: 1
    params:
        ref=model_ref("finetuned"),
        model_dtype=config["models"]["finetuned"]["dtype"],
        cfg=Tracked(SPLICE_CFG),
        finetune=Tracked(FINETUNE_CFG),
        act=Tracked(ACT_CFG),
        holdout_fraction=config["sae"]["holdout_fraction"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/evaluate_spliced.py"
