# The feature viewer's data (`saeflow view` serves it): per model × layer feature
# tables and histograms, per-headline predictions and features, examples sorted
# by feature, and a manifest saying which optional stages were built.
from saeflow.viewer.config import ViewerConfig

VIEWER_CFG = ViewerConfig.from_dict(config["viewer"], "viewer: ")


rule build_viewer_features:
    input:
        unpack(viewer_feature_inputs),
        sae=ancient("results/sae/{model}/layer_{layer}/sae"),
        sae_digest="results/sae/{model}/layer_{layer}/sae.sha256",
        domain="results/activations/{model}/layer_{layer}/domain.h5",
        general="results/activations/{model}/layer_{layer}/general.h5",
        spec="results/features/{model}/layer_{layer}/specialization.parquet",
    output:
        table="results/viewer/{model}/layer_{layer}/features.parquet",
        hist="results/viewer/{model}/layer_{layer}/histograms.npy",
    log:
        "logs/viewer/{model}/layer_{layer}/features.log",
    wildcard_constraints:
        model=FEATURE_MODEL,
    threads: 1
    params:
        models=MODELS,
        hist_bins=VIEWER_CFG.hist_bins,
        batch_size=VIEWER_CFG.batch_size,
        device=config["device"],
    script:
        "../scripts/build_viewer_features.py"


rule build_viewer_headlines:
    input:
        corpus="results/corpus/domain.parquet",
        acts=expand(
            "results/activations/finetuned/layer_{layer}/domain.h5", layer=LAYERS
        ),
        saes=ancient(expand("results/sae/finetuned/layer_{layer}/sae", layer=LAYERS)),
        sae_digests=expand(
            "results/sae/finetuned/layer_{layer}/sae.sha256", layer=LAYERS
        ),
        model=[FINETUNED_DIR] if config["models"]["finetuned"]["ref"] is None else [],
    output:
        table="results/viewer/headlines.parquet",
        features=expand(
            "results/viewer/finetuned/layer_{layer}/headline_features.parquet",
            layer=LAYERS,
        ),
    log:
        "logs/viewer/headlines.log",
    threads: 1
    params:
        ref=model_ref("finetuned"),
        finetune=(
            Tracked(FINETUNE_CFG)
            if config["models"]["finetuned"]["ref"] is None
            else None
        ),
        seed=config["seed"],
        layers=LAYERS,
        top_n=VIEWER_CFG.headline_top_features,
        batch_size=VIEWER_CFG.batch_size,
        device=config["device"],
    script:
        "../scripts/build_viewer_headlines.py"


rule index_viewer_examples:
    input:
        examples="results/examples/{model}/layer_{layer}/examples.parquet",
    output:
        examples="results/viewer/{model}/layer_{layer}/examples.parquet",
    log:
        "logs/viewer/{model}/layer_{layer}/examples.log",
    wildcard_constraints:
        model=FEATURE_MODEL,
    threads: 1
    params:
        row_group=VIEWER_CFG.examples_row_group,
    script:
        "../scripts/index_viewer_examples.py"


rule build_viewer_data:
    input:
        unpack(viewer_data_inputs),
        tables=expand(
            "results/viewer/{model}/layer_{layer}/features.parquet",
            model=FEATURE_MODELS,
            layer=LAYERS,
        ),
        headlines="results/viewer/headlines.parquet",
        corpus="results/corpus/domain.parquet",
    output:
        manifest="results/viewer/manifest.json",
    log:
        "logs/viewer/manifest.log",
    threads: 1
    params:
        models=FEATURE_MODELS,
        layers=LAYERS,
        parts={
            "compare": is_activated("compare"),
            "labels": is_activated("labels"),
            "examples": is_activated("examples"),
        },
        hist_bins=VIEWER_CFG.hist_bins,
    script:
        "../scripts/build_viewer_data.py"
