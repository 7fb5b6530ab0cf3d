import os
import re

from saeflow.workflow.config import (
    ActivationConfig,
    CorpusConfig,
    FeatureConfig,
    FinetuneConfig,
    SAEConfig,
    Tracked,
    apply_cli_overrides,
    resolve_layers,
    validate_config,
)
from saeflow.backtest.config import BacktestConfig
from saeflow.backtest.preflight import check_backtest_files, check_backtest_sentiment
from saeflow.corpus.preflight import check_corpus_files
from saeflow.models.preflight import check_finetune_labels, check_models
from saeflow.sae.imported import imported_saes

# `--config sae={k: 16}` reaches here merged into the config file's `sae` block,
# but with "16" a string (Snakemake's parser leaves nested values untyped): type
# the command-line values as YAML would, so the schema checks them.
apply_cli_overrides(config, workflow.config_settings.config)
# Unknown keys and wrong types stop the run here, before any job, naming the key;
# defaults come from the schema.
validate_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")

# Jobs write progress bars into their log files: one line per 10 s, not per step
# (tqdm reads TQDM_* at import; jobs inherit this process's environment).
os.environ.setdefault("TQDM_MININTERVAL", "10")

MODELS = ["base", "finetuned"]
CORPORA = ["domain", "general"]
# Every layer of activations.layers is cached (one forward pass yields them all);
# the preset (complete | fast | single | a list of layers) picks the layers that
# SAEs, features and comparisons are made for, so switching presets never
# re-caches activations.
CACHED_LAYERS = config["activations"]["layers"]
LAYERS = resolve_layers(config["preset"], CACHED_LAYERS)
TOP_N = config["features"]["top_n"]
TOP_FEATURES_N = config["features"]["top_features_n"]
FINETUNED_DIR = "results/models/finetuned"

# Build the typed configs once so that bad combinations also fail before any job.
CORPUS_CFG = {
    c: CorpusConfig.from_dict(config["corpora"][c], f"corpora.{c}: ") for c in CORPORA
}
FINETUNE_CFG = FinetuneConfig.from_dict(config["finetune"], "finetune: ")
ACT_CFG = ActivationConfig.from_dict(config["activations"], "activations: ")
SAE_CFG = SAEConfig.from_dict(config["sae"], "sae: ")
FEATURE_CFG = FeatureConfig.from_dict(config["features"], "features: ")
BACKTEST_CFG = BacktestConfig.from_dict(config.get("backtest"), "backtest: ")
BACKTEST_SCENARIOS = BACKTEST_CFG.news.scenarios()
BACKTEST_LAYERS = BACKTEST_CFG.features.layers or LAYERS
# "<model>/layer_<L>" -> folder of an SAE trained elsewhere (rule import_sae).
IMPORTED_SAES = imported_saes(config["imported_saes"], MODELS, LAYERS)


wildcard_constraints:
    model="|".join(MODELS),
    corpus="|".join(CORPORA),
    layer=r"\d+",
    scenario="|".join(BACKTEST_SCENARIOS),


# With --executor slurm: partitions, accounts and GPU requests are checked against
# the scheduler once the DAG is known, before any job is submitted.
onstart:
    from saeflow.workflow.cluster import preflight

    preflight(workflow)


def model_ref(model):
    """The model reference of `model`; the finetune rule's output when ref is null."""
    ref = config["models"][_tokens_of(model)]["ref"]
    if ref is None and model == "base":
        raise ValueError(
            "models.base.ref must name a model (hub id, path or package:<module>)"
        )
    return ref if ref is not None else FINETUNED_DIR


def model_input(wildcards):
    """Rule input for a model: the fine-tuned checkpoint when this workflow makes it."""
    model = _tokens_of(wildcards.model)
    return [FINETUNED_DIR] if config["models"][model]["ref"] is None else []


def _tokens_of(model):
    """The model whose tokenizer reads `model`'s caches: the crosscoder's caches
    hold the base model's tokens (both models' rows align one to one)."""
    return "base" if model == "crosscoder" else model


def is_activated(stage):
    """Whether an optional stage (a config block with `activate: true`) runs."""
    return bool(config.get(stage, {}).get("activate", False))


# Models whose features get statistics, examples, labels and viewer pages: the
# layer's crosscoder joins as a third (saeflow.crosscoder.as_sae). Rules that serve
# it too widen the model wildcard with FEATURE_MODEL.
FEATURE_MODELS = MODELS + (["crosscoder"] if is_activated("crosscoder") else [])
FEATURE_MODEL = "|".join(FEATURE_MODELS)


# Mistakes a job would meet only after others ran (a layer the model lacks, k above
# the latents, a model not to be had offline, a missing input file or column) stop
# the run here, naming the key. Reads config.json and file headers, never weights.
check_models({m: config["models"][m]["ref"] for m in MODELS}, ACT_CFG, SAE_CFG)
for c in CORPORA:
    check_corpus_files(CORPUS_CFG[c], f"corpora.{c}")
check_finetune_labels(
    FINETUNE_CFG, CORPUS_CFG["domain"], config["models"]["finetuned"]["ref"]
)
if is_activated("backtest"):
    check_backtest_files(BACKTEST_CFG)
    check_backtest_sentiment(
        BACKTEST_CFG, FINETUNE_CFG, config["models"]["finetuned"]["ref"]
    )


def viewer_feature_inputs(wildcards):
    """Optional inputs of one model × layer's viewer table: comparison, labels;
    for the crosscoder its latents table and both models' SAE features."""
    other = "base" if wildcards.model == "finetuned" else "finetuned"
    found = {}
    if wildcards.model == "crosscoder":
        layer = wildcards.layer
        found["latents"] = f"results/crosscoder/layer_{layer}/latents.parquet"
        found["model_specs"] = expand(
            "results/features/{model}/layer_{layer}/specialization.parquet",
            model=MODELS,
            layer=layer,
        )
    elif is_activated("compare"):
        found["matches"] = f"results/compare/layer_{wildcards.layer}/matches.parquet"
        found["other_spec"] = (
            f"results/features/{other}/layer_{wildcards.layer}/specialization.parquet"
        )
    if is_activated("labels"):
        found["labels"] = "results/labels/feature_labels_clean_domain.csv"
        found["patterns"] = "results/labels/token_patterns_domain.parquet"
    return found


def viewer_data_inputs(wildcards):
    """Inputs of the viewer manifest beyond the tables: the SAE summary, sorted
    examples and fine-tuning metrics when built."""
    found = {"saes": "results/sae/sae_summary.json"}
    if is_activated("compare"):
        found["comparison"] = "results/compare/comparison_summary.json"
    if is_activated("examples"):
        found["examples"] = expand(
            "results/viewer/{model}/layer_{layer}/examples.parquet",
            model=FEATURE_MODELS,
            layer=LAYERS,
        )
    if config["models"]["finetuned"]["ref"] is None:
        found["metrics"] = "results/models/finetuned_metrics.json"
    return found


def backtest_model_input():
    """The fine-tuned checkpoint as an input when this workflow makes it."""
    return [FINETUNED_DIR] if config["models"]["finetuned"]["ref"] is None else []


def backtest_labels_input():
    """Feature labels for the importance table, when the labels stage runs."""
    if is_activated("labels"):
        return ["results/labels/feature_labels_clean_domain.csv"]
    return []


def all_targets():
    """Everything `rule all` asks for: the spine, then each activated stage."""
    targets = expand(
        "results/features/{model}/{name}",
        model=MODELS,
        name=[
            "consolidated_top_features_all_layers.csv",
            "layer_comparison_report.csv",
            f"top_{TOP_FEATURES_N}_domain_features.csv",
            "domain_feature_summary.json",
            "specialization_by_layer.png",
        ],
    )
    targets += [
        f"results/sae/{model}/layer_{layer}/training_curve.png"
        for model in MODELS
        for layer in LAYERS
        if f"{model}/layer_{layer}" not in IMPORTED_SAES
    ]
    targets += ["results/sae/sae_summary.csv", "results/sae/sae_summary.png"]
    if config["models"]["finetuned"]["ref"] is None:
        targets.append("results/models/finetuned_metrics.json")
    if is_activated("compare"):
        targets += expand(
            "results/compare/layer_{layer}/{name}",
            layer=LAYERS,
            name=["matches.parquet", "lost.parquet", "transfer.json"],
        )
        targets += expand(
            "results/compare/{name}",
            name=[
                "comparison_summary.json",
                "overlap_by_layer.csv",
                "overlap_by_layer.png",
                "latent_scaling.png",
                "delta_distributions.png",
                "specialization_heatmap.png",
                "specialization_scatter.png",
            ],
        )
    if is_activated("crosscoder"):
        targets += expand(
            "results/crosscoder/crosscoder_summary.{ext}", ext=["csv", "json", "png"]
        )
        targets += expand(
            f"results/features/crosscoder/layer_{{layer}}/top_{TOP_N}_features_analysis.csv",
            layer=LAYERS,
        )
    if is_activated("splice"):
        targets += expand(
            "results/sae/{model}/layer_{layer}/spliced.json",
            model=MODELS,
            layer=LAYERS,
        )
        targets += expand(
            "results/compare/layer_{layer}/spliced_base_into_finetuned.json",
            layer=LAYERS,
        )
    if is_activated("viewer"):
        targets.append("results/viewer/manifest.json")
    if is_activated("examples"):
        targets += expand(
            "results/examples/{model}/layer_{layer}/examples.parquet",
            model=FEATURE_MODELS,
            layer=LAYERS,
        )
    if is_activated("labels"):
        targets.append("results/labels/feature_labels_clean_domain.csv")
    if is_activated("backtest"):
        targets += expand(
            "results/backtest/{scenario}/{name}",
            scenario=BACKTEST_SCENARIOS,
            name=["metrics.json", "equity.png", "drawdown.png", "rolling_sharpe.png"],
        )
    return targets
