# A BatchTopK crosscoder per layer over both models (crosscoder.activate): trained
# per seed, analysed against the SAE matching, summarised across layers.
from saeflow.workflow.config import CrosscoderConfig

CROSSCODER_CFG = CrosscoderConfig.from_dict(config["crosscoder"], "crosscoder: ")
CROSSCODER_CAT = "Crosscoder"


rule train_crosscoder:
    input:
        base_acts=expand(
            "results/activations/base/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        finetuned_acts=expand(
            "results/activations/finetuned/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
    output:
        crosscoder=directory(
            "results/crosscoder/layer_{layer}/seed_{cc_seed}/crosscoder"
        ),
        digest="results/crosscoder/layer_{layer}/seed_{cc_seed}/crosscoder.sha256",
        metrics="results/crosscoder/layer_{layer}/seed_{cc_seed}/metrics.json",
        curve="results/crosscoder/layer_{layer}/seed_{cc_seed}/training_curve.csv",
        figure="results/crosscoder/layer_{layer}/seed_{cc_seed}/training_curve.png",
    log:
        "logs/crosscoder/layer_{layer}/seed_{cc_seed}.log",
    benchmark:
        "benchmarks/crosscoder/layer_{layer}/seed_{cc_seed}.tsv"
    wildcard_constraints:
        cc_seed=r"\d+",
    threads: 1
    resources:
        mem_mb=6000,
    params:
        cfg=Tracked(CROSSCODER_CFG.sae_config(SAE_CFG)),
        seed=lambda wc: config["seed"] + int(wc.cc_seed),
        init_seed=lambda wc: sae_init_seed(
            config["seed"], "crosscoder", int(wc.cc_seed)
        ),
        device=config["device"],
    script:
        "../scripts/train_crosscoder.py"


rule analyse_crosscoder:
    input:
        crosscoders=ancient(
            expand(
                "results/crosscoder/layer_{{layer}}/seed_{s}/crosscoder",
                s=range(CROSSCODER_CFG.seeds),
            )
        ),
        crosscoder_digests=expand(
            "results/crosscoder/layer_{{layer}}/seed_{s}/crosscoder.sha256",
            s=range(CROSSCODER_CFG.seeds),
        ),
        metrics=expand(
            "results/crosscoder/layer_{{layer}}/seed_{s}/metrics.json",
            s=range(CROSSCODER_CFG.seeds),
        ),
        base_acts=expand(
            "results/activations/base/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        finetuned_acts=expand(
            "results/activations/finetuned/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
        sae_base=ancient("results/sae/base/layer_{layer}/sae"),
        sae_finetuned=ancient("results/sae/finetuned/layer_{layer}/sae"),
        sae_digests=expand(
            "results/sae/{model}/layer_{{layer}}/sae.sha256", model=MODELS
        ),
        metrics_base="results/sae/base/layer_{layer}/metrics.json",
        metrics_finetuned="results/sae/finetuned/layer_{layer}/metrics.json",
        matches="results/compare/layer_{layer}/matches.parquet",
        lost="results/compare/layer_{layer}/lost.parquet",
    output:
        latents="results/crosscoder/layer_{layer}/latents.parquet",
        summary="results/crosscoder/layer_{layer}/crosscoder_comparison.json",
    log:
        "logs/crosscoder/layer_{layer}/analyse.log",
    benchmark:
        "benchmarks/crosscoder/layer_{layer}/analyse.tsv"
    threads: 1
    resources:
        mem_mb=6000,
    params:
        cfg=CROSSCODER_CFG.to_dict(),
        compare=COMPARE_PARAMS,
        holdout_fraction=SAE_CFG.holdout_fraction,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/analyse_crosscoder.py"


rule summarize_crosscoders:
    input:
        layers=expand(
            "results/crosscoder/layer_{layer}/crosscoder_comparison.json", layer=LAYERS
        ),
        latents=expand("results/crosscoder/layer_{layer}/latents.parquet", layer=LAYERS),
    output:
        table=report(
            "results/crosscoder/crosscoder_summary.csv",
            caption="../report/crosscoder_summary.rst",
            category=CROSSCODER_CAT,
            labels={"table": "crosscoder classes, FVU and agreement by layer"},
        ),
        json="results/crosscoder/crosscoder_summary.json",
        figure=report(
            "results/crosscoder/crosscoder_summary.png",
            caption="../report/crosscoder_norms.rst",
            category=CROSSCODER_CAT,
            labels={"figure": "relative decoder norms"},
        ),
    log:
        "logs/crosscoder/summarize.log",
    threads: 1
    params:
        layers=LAYERS,
    script:
        "../scripts/summarize_crosscoders.py"


rule crosscoder_as_sae:
    """The first seed's crosscoder as the "crosscoder" model: its SAE with the
    input scales folded in, and virtual caches over both models' (no copy)."""
    input:
        # Folder and metrics by content: the digest reruns this when the
        # crosscoder changes (the metrics' scales change only with it).
        crosscoder=ancient("results/crosscoder/layer_{layer}/seed_0/crosscoder"),
        crosscoder_digest="results/crosscoder/layer_{layer}/seed_0/crosscoder.sha256",
        metrics=ancient("results/crosscoder/layer_{layer}/seed_0/metrics.json"),
        base_acts=expand(
            "results/activations/base/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        finetuned_acts=expand(
            "results/activations/finetuned/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
    output:
        sae=directory("results/sae/crosscoder/layer_{layer}/sae"),
        digest="results/sae/crosscoder/layer_{layer}/sae.sha256",
        acts=expand(
            "results/activations/crosscoder/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
    log:
        "logs/crosscoder/layer_{layer}/as_sae.log",
    threads: 1
    params:
        corpora=CORPORA,
    script:
        "../scripts/crosscoder_as_sae.py"
