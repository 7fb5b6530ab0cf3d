import dataclasses

from saeflow.workflow.config import sae_init_seed


rule train_sae:
    input:
        acts=expand(
            "results/activations/{{model}}/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
    output:
        sae=directory("results/sae/{model}/layer_{layer}/sae"),
        # sae/'s content digest (filled by saeflow's job()): consumers read the
        # folder as ancient() and this file beside it, so a retrain to identical
        # bytes reruns none of them (saeflow/workflow/digest.py).
        digest="results/sae/{model}/layer_{layer}/sae.sha256",
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
        # Data order from the run's seed; initial weights from the model's own
        # init seed, so base and fine-tuned SAEs never share a start.
        seed=config["seed"],
        init_seed=lambda wc: sae_init_seed(config["seed"], wc.model),
        device=config["device"],
    script:
        "../scripts/train_sae.py"


# The seed floor (compare.replicates): the default SAE again from seeds seed + r
# (data order) and sae_init_seed(seed, model, r) (weights). One job each, so on
# CPUs and clusters they spread over cores and GPUs; the data read they could
# share with train_sae is a few % of a step here (docs/compare.md).
rule train_sae_replicate:
    input:
        acts=expand(
            "results/activations/{{model}}/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
    output:
        sae=directory("results/sae/{model}/layer_{layer}/replicates/r{replicate}/sae"),
        digest="results/sae/{model}/layer_{layer}/replicates/r{replicate}/sae.sha256",
        metrics="results/sae/{model}/layer_{layer}/replicates/r{replicate}/metrics.json",
        curve="results/sae/{model}/layer_{layer}/replicates/r{replicate}/training_curve.csv",
        figure="results/sae/{model}/layer_{layer}/replicates/r{replicate}/training_curve.png",
    log:
        "logs/sae/{model}/layer_{layer}/replicate_{replicate}.log",
    benchmark:
        "benchmarks/sae/{model}/layer_{layer}/replicate_{replicate}.tsv"
    wildcard_constraints:
        replicate=r"[1-9]\d*",
    threads: 1
    resources:
        mem_mb=4000,
    params:
        cfg=Tracked(dataclasses.replace(SAE_CFG, variants=[])),
        seed=lambda wc: config["seed"] + int(wc.replicate),
        init_seed=lambda wc: sae_init_seed(config["seed"], wc.model, int(wc.replicate)),
        device=config["device"],
    script:
        "../scripts/train_sae.py"


rule summarize_saes:
    input:
        metrics=expand(
            "results/sae/{model}/layer_{layer}/metrics.json",
            model=MODELS,
            layer=LAYERS,
        ),
        spliced=(
            expand(
                "results/sae/{model}/layer_{layer}/spliced.json",
                model=MODELS,
                layer=LAYERS,
            )
            if is_activated("splice")
            else []
        ),
        base_in_finetuned=(
            expand(
                "results/compare/layer_{layer}/spliced_base_into_finetuned.json",
                layer=LAYERS,
            )
            if is_activated("splice")
            else []
        ),
    output:
        table=report(
            "results/sae/sae_summary.csv",
            caption="../report/sae_summary.rst",
            category="SAE training",
            labels={"table": "all SAEs: FVU and spliced-in"},
        ),
        json="results/sae/sae_summary.json",
        figure=report(
            "results/sae/sae_summary.png",
            caption="../report/sae_summary.rst",
            category="SAE training",
            labels={"figure": "all SAEs: FVU and spliced-in"},
        ),
    log:
        "logs/sae/summarize_saes.log",
    threads: 1
    params:
        saes=[(m, layer) for m in MODELS for layer in LAYERS],
        layers=LAYERS,
    script:
        "../scripts/summarize_saes.py"


# An SAE trained elsewhere replaces train_sae for its model × layer: the same sae/
# and metrics.json (held-out figures measured here), no training curve.
if IMPORTED_SAES:

    ruleorder: import_sae > train_sae

    rule import_sae:
        input:
            folder=lambda wc: IMPORTED_SAES[wc.imported],
            acts=lambda wc: expand(
                "results/activations/{imported}/{corpus}.h5",
                imported=wc.imported,
                corpus=CORPORA,
            ),
        output:
            sae=directory("results/sae/{imported}/sae"),
            digest="results/sae/{imported}/sae.sha256",
            metrics="results/sae/{imported}/metrics.json",
        log:
            "logs/sae/import/{imported}.log",
        wildcard_constraints:
            imported="|".join(re.escape(k) for k in IMPORTED_SAES),
        threads: 1
        params:
            holdout_fraction=SAE_CFG.holdout_fraction,
            batch_size=FEATURE_CFG.batch_size,
            device=config["device"],
        script:
            "../scripts/import_sae.py"
