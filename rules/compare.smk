# Base vs fine-tuned: which features fine-tuning created, changed or removed, per
# layer (matching, null thresholds, deltas, transfer FVU), then across layers.
from saeflow.workflow.config import CompareConfig, sae_init_seed

# Built here so that bad combinations fail before any job. Params are plain dicts
# in the dataclass' field order, so that Snakemake sees (and reruns on) every
# change but not a mere reordering of keys in a config file. Plotting settings
# are left out of the matching params: changing them reruns only the figures.
COMPARE_CFG = CompareConfig.from_dict(config["compare"], "compare: ")
COMPARE_PARAMS = {k: v for k, v in COMPARE_CFG.to_dict().items() if k != "plots"}
COMPARE_TOP_N = COMPARE_CFG.top_n
COMPARE_CAT = "Base vs fine-tuned"


rule match_features:
    input:
        # SAE folders by their digests (saeflow/workflow/digest.py): an identical
        # retrain reruns nothing here.
        sae_base=ancient("results/sae/base/layer_{layer}/sae"),
        sae_finetuned=ancient("results/sae/finetuned/layer_{layer}/sae"),
        # The seed floor: replicates 1 .. R-1 of both models (train_sae_replicate).
        replicates_base=ancient(
            expand(
                "results/sae/base/layer_{{layer}}/replicates/r{r}/sae",
                r=range(1, COMPARE_CFG.replicates),
            )
        ),
        replicates_finetuned=ancient(
            expand(
                "results/sae/finetuned/layer_{{layer}}/replicates/r{r}/sae",
                r=range(1, COMPARE_CFG.replicates),
            )
        ),
        digests=expand(
            "results/sae/{model}/layer_{{layer}}/{sae}.sha256",
            model=["base", "finetuned"],
            sae=["sae"]
            + [f"replicates/r{r}/sae" for r in range(1, COMPARE_CFG.replicates)],
        ),
        base_acts=expand(
            "results/activations/base/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        finetuned_acts=expand(
            "results/activations/finetuned/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
    output:
        matches="results/compare/layer_{layer}/matches.parquet",
        lost="results/compare/layer_{layer}/lost.parquet",
        top=report(
            f"results/compare/layer_{{layer}}/top_{COMPARE_TOP_N}_compared_features.csv",
            caption="../report/compare_layer_top.rst",
            category=COMPARE_CAT,
            labels={"layer": "{layer}", "table": "top compared features"},
        ),
        summary="results/compare/layer_{layer}/layer_comparison.json",
    log:
        "logs/compare/layer_{layer}/match_features.log",
    benchmark:
        "benchmarks/compare/layer_{layer}/match_features.tsv"
    # Labels wait for these; labeling is the longest job near the end of a run.
    priority: 5
    threads: 1
    resources:
        mem_mb=4000,
    params:
        cfg=COMPARE_PARAMS,
        corpora=CORPORA,
        seed=config["seed"],
        # Replicate 0's init seeds (train_sae): equal ones would need a shared-init null.
        init_seeds=[sae_init_seed(config["seed"], m) for m in MODELS],
        device=config["device"],
    script:
        "../scripts/match_features.py"


rule measure_transfer:
    input:
        sae_base=ancient("results/sae/base/layer_{layer}/sae"),
        sae_finetuned=ancient("results/sae/finetuned/layer_{layer}/sae"),
        digests=expand(
            "results/sae/{model}/layer_{{layer}}/sae.sha256",
            model=["base", "finetuned"],
        ),
        base_acts=expand(
            "results/activations/base/layer_{{layer}}/{corpus}.h5", corpus=CORPORA
        ),
        finetuned_acts=expand(
            "results/activations/finetuned/layer_{{layer}}/{corpus}.h5",
            corpus=CORPORA,
        ),
    output:
        transfer="results/compare/layer_{layer}/transfer.json",
    log:
        "logs/compare/layer_{layer}/measure_transfer.log",
    benchmark:
        "benchmarks/compare/layer_{layer}/transfer.tsv"
    threads: 1
    params:
        holdout_fraction=config["sae"]["holdout_fraction"],
        batch_size=COMPARE_CFG.batch_size,
        device=config["device"],
    script:
        "../scripts/measure_transfer.py"


rule summarize_comparison:
    input:
        layers=expand(
            "results/compare/layer_{layer}/layer_comparison.json", layer=LAYERS
        ),
        transfers=expand("results/compare/layer_{layer}/transfer.json", layer=LAYERS),
        tops=expand(
            f"results/compare/layer_{{layer}}/top_{COMPARE_TOP_N}_compared_features.csv",
            layer=LAYERS,
        ),
        corpus="results/corpus/domain.parquet",
        spliced=(
            expand(
                "results/compare/layer_{layer}/spliced_base_into_finetuned.json",
                layer=LAYERS,
            )
            if is_activated("splice")
            else []
        ),
    output:
        summary=report(
            "results/compare/comparison_summary.json",
            caption="../report/compare_summary.rst",
            category=COMPARE_CAT,
            labels={"table": "comparison summary (JSON)"},
        ),
        overlap=report(
            "results/compare/overlap_by_layer.csv",
            caption="../report/compare_overlap_table.rst",
            category=COMPARE_CAT,
            labels={"table": "overlap and transfer by layer"},
        ),
        top=report(
            f"results/compare/top_{COMPARE_TOP_N}_compared_features.csv",
            caption="../report/compare_top.rst",
            category=COMPARE_CAT,
            labels={"table": "top compared features, all layers"},
        ),
    log:
        "logs/compare/summarize_comparison.log",
    threads: 1
    params:
        layers=LAYERS,
        top_n=COMPARE_TOP_N,
        preset=config["preset"],
    script:
        "../scripts/summarize_comparison.py"


rule plot_comparison:
    input:
        overlap="results/compare/overlap_by_layer.csv",
        summary="results/compare/comparison_summary.json",
        matches=expand("results/compare/layer_{layer}/matches.parquet", layer=LAYERS),
    output:
        overlap=report(
            "results/compare/overlap_by_layer.png",
            caption="../report/compare_overlap.rst",
            category=COMPARE_CAT,
            labels={"figure": "overlap and transfer FVU by layer"},
        ),
        latent_scaling=report(
            "results/compare/latent_scaling.png",
            caption="../report/compare_latent_scaling.rst",
            category=COMPARE_CAT,
            labels={"figure": "Latent Scaling"},
        ),
        deltas=report(
            "results/compare/delta_distributions.png",
            caption="../report/compare_deltas.rst",
            category=COMPARE_CAT,
            labels={"figure": "activation deltas"},
        ),
        heatmap=report(
            "results/compare/specialization_heatmap.png",
            caption="../report/compare_heatmap.rst",
            category=COMPARE_CAT,
            labels={"figure": "specialization heatmap"},
        ),
        scatter=report(
            "results/compare/specialization_scatter.png",
            caption="../report/compare_scatter.rst",
            category=COMPARE_CAT,
            labels={"figure": "specialization, base vs fine-tuned"},
        ),
    log:
        "logs/compare/plot_comparison.log",
    threads: 1
    params:
        layers=LAYERS,
        plots=COMPARE_CFG.plots.to_dict(),
    script:
        "../scripts/plot_comparison.py"
