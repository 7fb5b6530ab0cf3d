# Feature labels from an LLM, scored (detection, fuzzing from the labeler's
# P(yes); embedding similarity) against a random-label and a shuffled-label
# baseline in the same run.
from pathlib import Path

from saeflow.labels.config import LabelsConfig, load_templates
from saeflow.workflow.config import ConfigError

LABELS_CFG = LabelsConfig.from_dict(config["labels"], "labels: ")
if not set(LABELS_CFG.models) <= set(FEATURE_MODELS):
    raise ConfigError(
        f"labels.models lists {sorted(set(LABELS_CFG.models) - set(FEATURE_MODELS))}, "
        f"which this run has no features of (it has {FEATURE_MODELS}); the "
        "crosscoder's latents need crosscoder.activate: true"
    )
LABEL_KEYS = [(m, layer) for m in LABELS_CFG.models for layer in LAYERS]
LABEL_PROMPTS = Path(workflow.basedir) / LABELS_CFG.prompts
LABELER_MODEL = "results/labels/labeler_model"


rule prepare_labeler:
    """Join the GGUF labeler's parts (SHA-256 checked) and convert it into a
    transformers folder once, early: parsing a GGUF costs ~30 s (135M) to ~9 min
    (1.5B) per load on 2 cores, the folder seconds."""
    output:
        directory(LABELER_MODEL),
    log:
        "logs/labels/prepare_labeler.log",
    threads: 1
    resources:
        # Qwen2.5-Coder-1.5B dequantised to fp32: ~9 GB peak (SmolLM2: ~1 GB).
        mem_mb=10000,
    params:
        # Only what picks the weights: answer settings do not redo the conversion.
        weights=LABELS_CFG.labeler.weights(),
        cache="results/labels/cache/models",
    script:
        "../scripts/prepare_labeler.py"


rule label_features:
    input:
        spec=expand(
            "results/features/{model}/layer_{layer}/specialization.parquet",
            model=LABELS_CFG.models,
            layer=LAYERS,
        ),
        examples=expand(
            "results/examples/{model}/layer_{layer}/examples.parquet",
            model=LABELS_CFG.models,
            layer=LAYERS,
        ),
        matches=(
            expand("results/compare/layer_{layer}/matches.parquet", layer=LAYERS)
            if is_activated("compare")
            and LABELS_CFG.compare_n > 0
            and "finetuned" in LABELS_CFG.models
            else []
        ),
        labeler=LABELER_MODEL if LABELS_CFG.labeler.is_gguf else [],
        # Event families of the synthetic headlines: ground truth for the labels.
        corpus="results/corpus/domain.parquet",
        # Both corpora's texts: the explanation prompt shows whole sentences.
        texts=expand("results/corpus/{corpus}.parquet", corpus=CORPORA),
        # Token ids of both corpora (one layer's caches): corpus frequencies
        # for ranking a feature's tokens by lift.
        tokens=expand(
            "results/activations/finetuned/layer_{layer}/{corpus}.h5",
            layer=LAYERS[0],
            corpus=CORPORA,
        ),
    output:
        clean=report(
            "results/labels/feature_labels_clean_domain.csv",
            caption="../report/feature_labels.rst",
            category="Feature labels",
        ),
        detailed="results/labels/feature_labels_detailed_domain.csv",
        summary=report(
            "results/labels/labels_summary_domain.json",
            caption="../report/labels_summary.rst",
            category="Feature labels",
        ),
        figure=report(
            "results/labels/label_scores.png",
            caption="../report/label_scores.rst",
            category="Feature labels",
        ),
        # The token-pattern label of every feature (the viewer's feature table).
        patterns="results/labels/token_patterns_domain.parquet",
    log:
        "logs/labels/label_features.log",
    benchmark:
        "benchmarks/labels/label_features.tsv"
    # The viewer and the backtest wait for it.
    priority: 5
    threads: 1
    resources:
        # The 1.5B labeler in fp32: ~7 GB peak for the stage.
        mem_mb=8000,
    params:
        cfg=Tracked(LABELS_CFG),
        label_keys=LABEL_KEYS,
        layers=LAYERS,
        # The template texts, so that editing a template reruns only labeling.
        templates=load_templates(LABEL_PROMPTS),
        cache="results/labels/cache",
    script:
        "../scripts/label_features.py"
