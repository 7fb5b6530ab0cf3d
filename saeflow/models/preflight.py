"""Parse-time checks of the `models` block against the layers and SAEs asked of
them, from each model's config.json (no weights, no torch).

Without them a layer the model lacks or a k above the SAE's latents fails only
inside cache_activations or train_sae, after fine-tuning and caching have run,
and a model that cannot be had offline fails inside the first job that loads it.
"""

from __future__ import annotations

from collections.abc import Mapping

from saeflow.models.refs import ModelNotFoundError, ModelShape, read_model_shape
from saeflow.workflow.config import (
    ActivationConfig,
    ConfigError,
    CorpusConfig,
    FinetuneConfig,
    SAEConfig,
)


def check_models(
    refs: Mapping[str, str | None], acts: ActivationConfig, sae: SAEConfig
) -> dict[str, ModelShape]:
    """Read every model's shape and check `acts` and `sae` against it.

    `refs` maps a model name to its `models.<name>.ref`; None (the fine-tuned
    model made by the workflow) takes the base model's shape, since fine-tuning
    keeps the architecture. Returns the shapes; raises ConfigError naming the key.
    """
    shapes: dict[str, ModelShape] = {}
    for name, ref in refs.items():
        key = f"models.{name}.ref"
        if ref is None:
            if name == "base":
                raise ConfigError(
                    f"invalid config at key '{key}': the base model must be named "
                    "(hub id, local folder or package:<module>)"
                )
            continue
        try:
            shapes[name] = read_model_shape(ref)
        except ModelNotFoundError as err:
            raise ConfigError(f"invalid config at key '{key}': {err}") from None
        _check_layers(shapes[name], acts.layers, f"{key} {ref!r}")
        _check_latents(shapes[name], sae, f"{key} {ref!r}")
    return shapes


def _check_layers(shape: ModelShape, layers: list[int], model: str) -> None:
    if shape.num_layers is None:  # config.json names no layer count: jobs will tell
        return
    bad = [layer for layer in layers if layer > shape.num_layers]
    if bad:
        raise ConfigError(
            f"invalid config at key 'activations.layers': {bad} not in "
            f"0..{shape.num_layers} ({model} has {shape.num_layers} layers; "
            "0 is the embeddings)"
        )


def _check_latents(shape: ModelShape, sae: SAEConfig, model: str) -> None:
    if shape.hidden_size is None:
        return
    named = {v["name"]: i for i, v in enumerate(sae.variants)}
    for name, cfg in sae.variant_configs():
        n_latents = cfg.expansion * shape.hidden_size
        if cfg.kind == "relu" or cfg.k <= n_latents:  # a ReLU SAE reads no k
            continue
        if name == "default":
            key = "sae.k"
        else:
            i = named[name]
            key = f"sae.variants[{i}].{'k' if 'k' in sae.variants[i] else 'expansion'}"
        raise ConfigError(
            f"invalid config at key '{key}': k={cfg.k} exceeds the {n_latents} "
            f"latents (expansion {cfg.expansion} × hidden size {shape.hidden_size} "
            f"of {model})"
        )


def check_finetune_labels(
    finetune: FinetuneConfig, domain: CorpusConfig, finetuned_ref: str | None
) -> None:
    """The classification objective needs a domain corpus that has labels.

    Only the workflow's own fine-tuning (models.finetuned.ref null) reads them.
    Synthetic headlines carry labels; gensim text never does; a huggingface or
    local corpus does when it names a label_column.
    """
    if finetuned_ref is not None or finetune.objective != "classification":
        return
    if domain.source == "synthetic_headlines" or domain.label_column:
        return
    where = domain.path or domain.dataset or domain.source
    raise ConfigError(
        "invalid config at key 'finetune.objective': 'classification' trains on "
        f"the domain corpus' labels, but corpora.domain ({domain.source} "
        f"{where!r}) has none (no corpora.domain.label_column). Set "
        "finetune.objective: mlm to fine-tune on the unlabelled text "
        "(masked-LM / next-token), or name the label column"
    )
