"""Typed configuration objects, one per workflow component.

Rule scripts build these from the validated Snakemake config and pass them whole;
library functions never index raw config dicts. Each dataclass checks the
combinations a JSON schema cannot express and names the offending key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


@dataclass(frozen=True)
class _FromDict:
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "") -> Self:
        """Build from a (schema-validated) mapping, refusing unknown keys."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {where}{unknown}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Tracked(dict):
    """A config dataclass passed as a Snakemake param, visible to rerun triggers.

    Snakemake compares only params it can repr (builtins, pandas, numpy) and
    silently ignores others, so a dataclass param would never rerun its rule when
    the config changes. This dict of the dataclass' fields is compared instead;
    `saeflow.workflow.script.job` hands the script the dataclass itself (`.value`).
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__(dataclasses.asdict(cfg))
        self.value = cfg


def untracked(value: Any) -> Any:
    """The dataclass behind a `Tracked` param; any other value unchanged."""
    return value.value if isinstance(value, Tracked) else value


@dataclass(frozen=True)
class CorpusConfig(_FromDict):
    """One text corpus (the `corpora.<name>` block of config.yaml)."""

    source: Literal["synthetic_headlines", "gensim", "huggingface", "local"]
    """Where the text comes from."""
    max_docs: int | None = None
    """Keep at most this many documents (after cleaning); None keeps all."""
    n_docs: int = 3000
    """synthetic_headlines: how many headlines to generate."""
    start_date: str = "2010-01-04"
    """synthetic_headlines: first headline date (ISO)."""
    end_date: str = "2017-11-10"
    """synthetic_headlines: last headline date (ISO)."""
    tickers: list[str] = field(default_factory=lambda: ["MSFT", "AMZN", "NVDA"])
    """synthetic_headlines: tickers headlines are about."""
    label_noise: float = 0.05
    """synthetic_headlines: fraction of headlines whose label is resampled."""
    mix_real_finance: bool = False
    """synthetic_headlines: add the finance-themed real news documents gensim ships."""
    passage_words: int = 80
    """gensim: split articles into passages of about this many words."""
    parts: list[str] = field(default_factory=lambda: ["wikipedia", "lee"])
    """gensim: which shipped corpora to use."""
    exclude_finance: bool = False
    """gensim: drop the finance-themed Lee documents (they go to the domain corpus)."""
    dataset: str | None = None
    """huggingface: dataset id or local dataset folder."""
    config_name: str | None = None
    """huggingface: dataset configuration name."""
    split: str = "train"
    """huggingface: split to read."""
    path: str | None = None
    """local: CSV / TSV / Parquet / JSONL table, .txt file, or folder of .txt files
    (one document per file)."""
    text_format: Literal["lines", "paragraphs"] = "lines"
    """local .txt file: one document per line, or per blank-line-separated block."""
    text_column: str = "text"
    """huggingface/local: column holding the text."""
    label_column: str | None = None
    """huggingface/local: optional label column."""
    date_column: str | None = None
    """huggingface/local: optional date column."""
    ticker_column: str | None = None
    """huggingface/local: optional ticker column."""
    id_column: str | None = None
    """huggingface/local: optional stable document id column (else row number)."""

    def __post_init__(self) -> None:
        if self.source == "huggingface" and not self.dataset:
            raise ConfigError("corpora.*.dataset is required when source=huggingface")
        if self.source == "local" and not self.path:
            raise ConfigError("corpora.*.path is required when source=local")
        if not 0.0 <= self.label_noise <= 1.0:
            raise ConfigError(f"corpora.*.label_noise={self.label_noise} not in [0,1]")


@dataclass(frozen=True)
class FinetuneConfig(_FromDict):
    """How the `finetune_model` rule makes the fine-tuned model from the base."""

    epochs: float = 2.0
    """Passes over the training split."""
    lr: float = 5e-5
    """AdamW learning rate."""
    batch_size: int = 32
    """Headlines per step."""
    max_length: int = 64
    """Tokens per headline (longer ones are truncated)."""
    eval_fraction: float = 0.2
    """Held-out fraction for accuracy (split by document, seeded)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    objective: Literal["classification", "mlm"] = "classification"
    """`classification`: a sentiment head trained on the domain corpus' labels;
    `mlm`: domain-adaptive language-model training on its text alone (masked-LM
    for encoders, next-token for causal LMs), labels unused."""
    mlm_probability: float = 0.15
    """mlm, encoders: fraction of tokens masked (BERT's 15 %)."""
    head_warmup_steps: int = 100
    """mlm, encoders whose checkpoint ships no masked-LM head: steps training the
    freshly initialised head alone (encoder frozen) before the `before` loss is
    measured, so before/after compare encoders, not a random head."""

    def __post_init__(self) -> None:
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError("finetune.mlm_probability must be in (0, 1)")


@dataclass(frozen=True)
class ActivationConfig(_FromDict):
    """How activations are extracted and cached (the `activations` block)."""

    layers: list[int]
    """Hidden-state indices to cache (0 = embeddings, L = output of block L)."""
    max_length: int = 128
    """Tokens per model input."""
    overflow: Literal["truncate", "window"] = "truncate"
    """Texts longer than max_length: cut, or split into consecutive windows."""
    batch_size: int = 32
    """Texts per forward pass."""
    dtype: Literal["float16", "float32", "bfloat16"] = "float16"
    """Storage dtype of cached activations (bfloat16 is stored as float32 bits)."""
    special_tokens: Literal["exclude", "flag"] = "exclude"
    """Special tokens ([CLS], [SEP], BOS): leave out, or keep them flagged."""
    max_tokens: int | None = None
    """Stop after this many cached tokens per corpus (None: all)."""
    chunk_rows: int = 4096
    """HDF5 chunk size in rows; reads during SAE training are chunk-contiguous."""

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("activations.layers must list at least one layer")
        if any(layer < 0 for layer in self.layers):
            raise ConfigError(f"activations.layers has a negative layer: {self.layers}")


VARIANT_KEYS = {
    "kind",
    "expansion",
    "k",
    "optimizer",
    "lr",
    "l1_coef",
    "warmup_steps",
    "aux_k",
    "aux_coef",
    "dead_after_tokens",
}
"""SAEConfig keys an `sae.variants` entry may override (the rest is shared data)."""


@dataclass(frozen=True)
class SAEConfig(_FromDict):
    """Architecture and training of one sparse autoencoder (the `sae` block)."""

    expansion: int = 8
    """Latents per input dimension (M = expansion * D)."""
    k: int = 32
    """Active latents per token."""
    kind: Literal["topk", "batchtopk", "relu"] = "topk"
    """SAE kind: top-k per token, top-(N·k) per batch, or ReLU with an L1 penalty."""
    epochs: float = 4.0
    """Passes over the training tokens."""
    batch_size: int = 1024
    """Tokens per optimizer step."""
    optimizer: Literal["signum", "adam"] = "signum"
    """signum: schedule-free sign-SGD (as EleutherAI sparsify); adam: Adam."""
    lr: float | None = None
    """Learning rate; None scales c / sqrt(M / 2**14), c from `optimizer`."""
    l1_coef: float = 0.05
    """relu: weight of the L1 penalty on the latents."""
    warmup_steps: int = 0
    """Linear learning-rate warmup (schedule-free sign-SGD needs none; Adam ~50)."""
    aux_k: int | None = None
    """Latents in the AuxK loss; None uses D // 2 (Gao et al. 2024)."""
    aux_coef: float = 1.0 / 32
    """Weight of the AuxK loss."""
    dead_after_tokens: int = 20_000
    """A latent that has not fired for this many tokens counts as dead for AuxK."""
    dead_eval_tokens: int = 10_000_000
    """After training, a latent that fires on none of this many training tokens (all
    of them if fewer) is reported dead; 10 M is Gao et al. 2024's window."""
    holdout_fraction: float = 0.1
    """Tail of each activation file held out for FVU."""
    shuffle_chunks: int = 8
    """HDF5 chunks mixed in the in-memory shuffle buffer."""
    log_every: int = 20
    """Steps between rows of the training-curve CSV."""
    checkpoint_every: int = 200
    """Steps between checkpoints (weights, optimizer, RNG, data position); 0: none."""
    precision: Literal["auto", "fp32", "bf16", "fast-fp32"] = "auto"
    """auto: bf16 autocast on CUDA, fp32 elsewhere. fast-fp32: fp32 tensors whose
    matmuls multiply at reduced precision (TF32 on CUDA, bf16 on CPUs with AMX
    or AVX512-BF16), the encoder's ~2x on such a CPU; nothing is cast."""
    tensorboard: bool = False
    """Also write TensorBoard curves (if tensorboard is installed)."""
    variants: list[dict[str, Any]] = field(default_factory=list)
    """More SAEs trained side by side on the same batches: each a `name` plus
    overrides of the keys in VARIANT_KEYS."""

    def variant_configs(self) -> list[tuple[str, SAEConfig]]:
        """("default", this config) then each variant's (name, merged config)."""
        base = dataclasses.replace(self, variants=[])
        out = [("default", base)]
        for v in self.variants:
            overrides = {k: val for k, val in v.items() if k != "name"}
            out.append((v["name"], dataclasses.replace(base, **overrides)))
        return out

    def __post_init__(self) -> None:
        names = [v.get("name") for v in self.variants]
        for i, v in enumerate(self.variants):
            bad = sorted(set(v) - VARIANT_KEYS - {"name"})
            if bad:
                raise ConfigError(f"sae.variants[{i}]: keys {bad} cannot vary per SAE")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(v.get("name", ""))):
                raise ConfigError(f"sae.variants[{i}].name must be a plain file name")
        if len(set(names)) != len(names) or "default" in names:
            raise ConfigError(
                f"sae.variants names must be unique, not 'default': {names}"
            )
        if self.k < 1:
            raise ConfigError(f"sae.k must be >= 1, got {self.k}")
        if self.expansion < 1:
            raise ConfigError(f"sae.expansion must be >= 1, got {self.expansion}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError("sae.holdout_fraction must be in (0, 1)")


@dataclass(frozen=True)
class FeatureConfig(_FromDict):
    """Feature statistics and specialization ranking (the `features` block)."""

    top_n: int = 50
    """Features per layer in top_{N}_features_analysis.*."""
    top_features_n: int = 100
    """Features across layers in top_{M}_domain_features.csv."""
    min_specialization: float = 0.0
    """Only features whose domain-minus-general mean exceeds this are ranked."""
    batch_size: int = 4096
    """Tokens encoded at once while streaming statistics."""


def validate_config(config: dict[str, Any], schema_path: str) -> None:
    """Validate the workflow config against the schema, filling defaults in place.

    Raises a WorkflowError whose one-line message names the offending key, instead
    of Snakemake's default dump of the whole schema.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema=schema_path, set_default=True)
        problem = None
    except WorkflowError as err:
        inner = err.__context__  # the jsonschema ValidationError
        if not hasattr(inner, "absolute_path"):
            raise
        key = ".".join(str(p) for p in inner.absolute_path) or "<top level>"
        problem = f"invalid config at key '{key}': {inner.message}"
    if problem:
        # Raised outside the except block so Snakemake shows this, not the dump.
        raise WorkflowError(problem)


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def yaml_scalar(text: str) -> Any:
    """`text` typed as a YAML scalar: null, bool, int or float, else the text.

    YAML 1.2's `1e-4` (a string to PyYAML's YAML 1.1) counts as a float. Anything
    else (dates, `a: b`, unparseable text) stays the text the user wrote.
    """
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _YAML12_FLOAT.fullmatch(text.strip()):
        return float(text)
    return text


def typed_overrides(value: Any) -> Any:
    """Command-line config values typed as YAML would type them.

    Snakemake parses `--config key=value` itself: a top-level value is tried as
    int, float, `True`/`False`, then YAML with PyYAML's BaseLoader, which leaves
    every scalar inside a mapping or list a string (`sae={k: 16}` gives
    `{"sae": {"k": "16"}}`, `preset=[2,6]` gives `["2", "6"]`) and `null`/`true`
    strings at the top. Here each string scalar is typed again (`16` -> 16,
    `0.95` -> 0.95, `true` -> True, `null` -> None); keys stay as they are.
    """
    if isinstance(value, Mapping):
        return {k: typed_overrides(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [typed_overrides(v) for v in value]
    if isinstance(value, str):
        return yaml_scalar(value)
    return value


def apply_cli_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Replace, in `config`, the values `--config` set by their YAML-typed form.

    Snakemake has already merged the overrides into the config file's values key
    by key (`sae={k: 16}` changes `sae.k` and keeps the rest of `sae`), with the
    strings its parser leaves; merging the typed overrides the same way again
    changes only their types.
    """
    from snakemake.utils import update_config

    update_config(config, typed_overrides(dict(overrides)))


PRESETS = ("complete", "fast", "single")


def resolve_layers(preset: Any, configured: list[int]) -> list[int]:
    """The layers a run works on: a preset name or an explicit list of layers.

    `complete`: every layer of `activations.layers`; `fast`: its last two; `single`:
    its last one. An explicit list (`[4, 6]`, `6`, `"4,6"`, or the strings
    Snakemake's `--config preset=[4,6]` produces) must be a subset of
    `activations.layers`, since only those are cached. Order follows the config.
    """
    if preset is None or preset == "complete":
        return list(configured)
    if preset == "fast":
        return list(configured[-2:])
    if preset == "single":
        return list(configured[-1:])
    items = preset if isinstance(preset, list) else str(preset).strip("[]").split(",")
    try:
        wanted = {int(str(v).strip()) for v in items if str(v).strip()}
    except ValueError:
        wanted = set()
    if not wanted:
        raise ConfigError(
            f"invalid config at key 'preset': {preset!r} is neither one of "
            f"{list(PRESETS)} nor a list of layers"
        )
    unknown = sorted(wanted - set(configured))
    if unknown:
        raise ConfigError(
            f"invalid config at key 'preset': layers {unknown} are not in "
            f"activations.layers {configured} (only those are cached)"
        )
    return [layer for layer in configured if layer in wanted]


@dataclass(frozen=True)
class ComparePlotConfig(_FromDict):
    """Figures of the base vs fine-tuned comparison (the `compare.plots` block)."""

    heatmap_features: int = 25
    """Top fine-tuned features per layer shown in the specialization heatmap."""
    dpi: int = 120
    """Resolution of every comparison figure."""

    def __post_init__(self) -> None:
        if self.heatmap_features < 1:
            raise ConfigError("compare.plots.heatmap_features must be >= 1")


@dataclass(frozen=True)
class CompareConfig(_FromDict):
    """Base vs fine-tuned feature comparison (the `compare` block)."""

    activate: bool = True
    """Run the comparison stage (the product's central finding)."""
    null_quantile: float = 0.99
    """A pair is matched when its score exceeds this quantile of the scores the same
    assignment gives against a null SAE (random features, base statistics)."""
    candidates: int = 32
    """Sparse assignment: best partners kept per feature, on each side."""
    dense_max_latents: int = 4096
    """Exact dense assignment when both SAEs have at most this many latents."""
    block_size: int = 2048
    """Feature rows per block of decoder-cosine scores (bounds memory)."""
    correlation: Literal["auto", "scatter", "gemm"] = "auto"
    """Co-activation counts: sparse scatter (CPU), dense GEMMs over token chunks
    (GPU), or auto (gemm on CUDA, scatter on CPU)."""
    max_tokens: int | None = None
    """Cap on aligned tokens per corpus used for activation statistics (whole
    documents sampled with the seed); None uses all."""
    min_aligned_fraction: float = 0.9
    """Refuse activation comparison when fewer token positions align."""
    n_bootstrap: int = 200
    """Bootstrap resamples (documents for deltas, features for overlap)."""
    ci: float = 0.95
    """Coverage of every bootstrap interval."""
    changed_fold: float = 2.0
    """A matched feature is `changed` when its domain mean moved by at least this
    factor (and the interval of the move excludes 0)."""
    top_n: int = 200
    """Features per layer in the compared-features table."""
    batch_size: int = 4096
    """Tokens encoded at once."""
    replicates: int = 2
    """SAEs per model × layer, replicate r from init seed `sae_init_seed(seed,
    model, r)`; replicate 0 is the one every other stage reads. With 2 or more,
    same-model pairs give the seed floor the cross-model overlap is judged
    against, and a feature is new only if stable across replicates."""
    nu_error_max: float = 0.3
    """Latent Scaling: a fine-tuned feature is absent from the base model when
    ν on the error target is below this (Minder et al. 2025: ~0.2-0.3)."""
    nu_reconstruction_max: float = 0.5
    """Latent Scaling: ... and ν on the reconstruction target below this (~0.5)."""
    plots: ComparePlotConfig = field(default_factory=ComparePlotConfig)
    """Figures (changing them reruns only the plotting rule)."""

    def __post_init__(self) -> None:
        if isinstance(self.plots, dict):
            object.__setattr__(
                self,
                "plots",
                ComparePlotConfig.from_dict(self.plots, "compare.plots: "),
            )
        if not 0.0 < self.null_quantile < 1.0:
            raise ConfigError("compare.null_quantile must be in (0, 1)")
        if not 0.0 < self.ci < 1.0:
            raise ConfigError("compare.ci must be in (0, 1)")
        if not 0.0 < self.min_aligned_fraction <= 1.0:
            raise ConfigError("compare.min_aligned_fraction must be in (0, 1]")
        if self.changed_fold <= 1.0:
            raise ConfigError("compare.changed_fold must be > 1")
        for name in (
            "candidates",
            "block_size",
            "n_bootstrap",
            "top_n",
            "batch_size",
            "replicates",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"compare.{name} must be >= 1")
        if self.replicates > MODEL_SEED_STRIDE:
            raise ConfigError(f"compare.replicates must be <= {MODEL_SEED_STRIDE}")


MODEL_SEED_STRIDE = 1000
"""Init seeds of different models' SAEs lie this far apart (see sae_init_seed)."""


def sae_init_seed(seed: int, model: str, replicate: int = 0) -> int:
    """Seed of the initial weights of `model`'s SAE replicate `replicate`.

    Every SAE of a layer starts from its own random weights: replicates of one
    model differ by `replicate`, models (and the crosscoder) by
    MODEL_SEED_STRIDE. Same-model and cross-model pairs are then compared under
    the same relation (independent starts), and a shared start is never counted
    as shared features.
    """
    index = {"base": 0, "finetuned": 1, "crosscoder": 2}[model]
    return seed + replicate + MODEL_SEED_STRIDE * index


@dataclass(frozen=True)
class CrosscoderConfig(_FromDict):
    """A BatchTopK crosscoder per layer over both models (the `crosscoder` block).

    Training settings not named here (optimizer, lr, batch size, AuxK, epochs)
    are the `sae` block's.
    """

    activate: bool = False
    """Train and analyse crosscoders (about 4 SAEs' CPU time per layer and seed)."""
    expansion: int = 8
    """Latents per input dimension of the 2D-wide input: 8 gives 16 D latents, as
    many as the two models' separate SAEs together."""
    k: int = 64
    """Mean active latents per token (BatchTopK): the two separate SAEs' k summed."""
    seeds: int = 2
    """Crosscoders per layer from different seeds; latents of the first are
    stable when matched in every other."""
    base_only_max: float = 0.1
    """Relative decoder norm ‖d_ft‖ / (‖d_base‖ + ‖d_ft‖) below this: base-only."""
    finetuned_only_min: float = 0.9
    """Relative decoder norm above this: fine-tuned-only."""
    agreement_cosine: float = 0.7
    """A separately trained SAE's feature agrees with a crosscoder latent when
    their decoder directions (the same model's half) have this cosine."""

    def __post_init__(self) -> None:
        if not 0.0 < self.base_only_max < self.finetuned_only_min < 1.0:
            raise ConfigError(
                "crosscoder: need 0 < base_only_max < finetuned_only_min < 1"
            )
        for name in ("expansion", "k", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"crosscoder.{name} must be >= 1")

    def sae_config(self, sae: SAEConfig) -> SAEConfig:
        """The SAE training config a crosscoder trains with."""
        return dataclasses.replace(
            sae, expansion=self.expansion, k=self.k, kind="batchtopk", variants=[]
        )


@dataclass(frozen=True)
class SpliceConfig(_FromDict):
    """Spliced-in evaluation of every SAE (the `splice` block)."""

    activate: bool = False
    """Run it in rule all (config.yaml turns it on)."""
    max_docs: int = 300
    """Evaluated documents per SAE at most (a seeded sample when more qualify)."""
    batch_size: int = 32
    """Documents per forward pass."""

    def __post_init__(self) -> None:
        for name in ("max_docs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"splice.{name} must be >= 1")
