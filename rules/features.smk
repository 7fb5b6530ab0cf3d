rule compute_feature_stats:
    input:
        # The folder's time is ignored; its digest reruns this when the SAE changes.
        sae=ancient("results/sae/{model}/layer_{layer}/sae"),
        sae_digest="results/sae/{model}/layer_{layer}/sae.sha256",
        acts="results/activations/{model}/layer_{layer}/{corpus}.h5",
    output:
        stats="results/features/{model}/layer_{layer}/{corpus}_stats.parquet",
    log:
        "logs/features/{model}/layer_{layer}/{corpus}_stats.log",
    benchmark:
        "benchmarks/features/{model}/layer_{layer}/{corpus}_stats.tsv"
    wildcard_constraints:
        model=FEATURE_MODEL,
    threads: 1
    params:
        batch_size=FEATURE_CFG.batch_size,
        device=config["device"],
    script:
        "../scripts/compute_feature_stats.py"


rule rank_specialized_features:
    input:
        domain="results/features/{model}/layer_{layer}/domain_stats.parquet",
        general="results/features/{model}/layer_{layer}/general_stats.parquet",
    output:
        table="results/features/{model}/layer_{layer}/specialization.parquet",
        csv=f"results/features/{{model}}/layer_{{layer}}/top_{TOP_N}_features_analysis.csv",
        json=f"results/features/{{model}}/layer_{{layer}}/top_{TOP_N}_features_analysis.json",
    log:
        "logs/features/{model}/layer_{layer}/rank.log",
    wildcard_constraints:
        model=FEATURE_MODEL,
    threads: 1
    params:
        cfg=Tracked(FEATURE_CFG),
    script:
        "../scripts/rank_specialized_features.py"


rule summarize_layers:
    input:
        layers=expand(
            f"results/features/{{model}}/layer_{{layer}}/top_{TOP_N}_features_analysis.csv",
            layer=LAYERS,
            allow_missing=True,
        ),
        corpus="results/corpus/domain.parquet",
    output:
        consolidated=report(
            "results/features/{model}/consolidated_top_features_all_layers.csv",
            caption="../report/consolidated.rst",
            category="Domain specialization",
            labels={"model": "{model}", "table": "top features, all layers"},
        ),
        layer_comparison=report(
            "results/features/{model}/layer_comparison_report.csv",
            caption="../report/layer_comparison.rst",
            category="Domain specialization",
            labels={"model": "{model}", "table": "layer comparison"},
        ),
        top_domain=f"results/features/{{model}}/top_{TOP_FEATURES_N}_domain_features.csv",
        summary="results/features/{model}/domain_feature_summary.json",
        figure=report(
            "results/features/{model}/specialization_by_layer.png",
            caption="../report/specialization_by_layer.rst",
            category="Domain specialization",
            labels={"model": "{model}", "figure": "specialization by layer"},
        ),
    log:
        "logs/features/{model}/summarize_layers.log",
    threads: 1
    params:
        cfg=Tracked(FEATURE_CFG),
        layers=LAYERS,
    script:
        "../scripts/summarize_layers.py"
