"""Make the fine-tuned model: the base model trained to classify domain sentiment.

This mirrors how FinBERT was made from BERT (a classification head trained on
labelled financial text, the encoder updated with it), on CPU in minutes. The
held-out accuracy is reported next to the majority-class baseline, so a model
that learned nothing is visible as such.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification

from saeflow.models.loading import load_tokenizer, resolve_model_ref
from saeflow.workflow.config import FinetuneConfig
from saeflow.workflow.io import atomic_path

log = logging.getLogger(__name__)


class FinetuneResult(NamedTuple):
    """What fine-tuning achieved on the held-out split."""

    accuracy: float
    """Held-out accuracy of the fine-tuned classifier."""
    majority_baseline: float
    """Held-out accuracy of always predicting the most frequent training label."""
    n_train: int
    """Labelled documents trained on."""
    n_eval: int
    """Labelled documents held out."""
    labels: list[str]
    """Class names in head order."""
    final_train_loss: float
    """Mean cross-entropy over the last 20 steps."""


def split_labelled(
    corpus: pd.DataFrame, eval_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled rows split by document into (train, eval), seeded."""
    labelled = corpus[corpus["label"].notna()].reset_index(drop=True)
    if len(labelled) < 10:
        raise ValueError(
            f"fine-tuning needs labelled domain documents; found {len(labelled)} "
            "rows with a non-null 'label'"
        )
    return seeded_split(labelled, eval_fraction, seed)


def seeded_split(
    rows: pd.DataFrame, eval_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`rows` shuffled with `seed` into (train, eval); eval holds at least one."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_eval = max(1, int(round(eval_fraction * len(rows))))
    return rows.iloc[order[n_eval:]], rows.iloc[order[:n_eval]]


def save_checkpoint(model, tok, out_dir: str | Path) -> None:
    """Model and tokenizer into `out_dir`, atomically."""
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def finetune(
    base_ref: str,
    corpus: pd.DataFrame,
    cfg: FinetuneConfig,
    seed: int,
    out_dir: str | Path,
) -> FinetuneResult:
    """Fine-tune `base_ref` on the corpus' labels and save it to `out_dir`.

    `out_dir` receives a transformers checkpoint (model + tokenizer) written
    atomically; loading it with AutoModel gives the bare fine-tuned encoder.
    """
    torch.manual_seed(seed)
    train, held = split_labelled(corpus, cfg.eval_fraction, seed)
    labels = sorted(train["label"].unique())
    label_id = {name: i for i, name in enumerate(labels)}
    tok = load_tokenizer(base_ref)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_ref(base_ref),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_id,
    )
    model.config.pad_token_id = tok.pad_token_id
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    y_train = torch.tensor([label_id[v] for v in train["label"]])
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    order = torch.randperm(len(train), generator=gen)
    for step in tqdm(range(total), desc="finetune", unit="step"):
        pos = (step % steps_per_epoch) * cfg.batch_size
        if step and pos == 0:
            order = torch.randperm(len(train), generator=gen)
        rows = order[pos : pos + cfg.batch_size]
        batch = _encode(tok, train["text"].iloc[rows.numpy()].tolist(), cfg.max_length)
        out = model(**batch, labels=y_train[rows])
        out.loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    accuracy = _accuracy(model, tok, held, label_id, cfg)
    majority = train["label"].value_counts().idxmax()
    result = FinetuneResult(
        accuracy=accuracy,
        majority_baseline=float((held["label"] == majority).mean()),
        n_train=len(train),
        n_eval=len(held),
        labels=labels,
        final_train_loss=float(np.mean(losses[-20:])),
    )
    log.info("fine-tuned: %s", result)
    save_checkpoint(model, tok, out_dir)
    return result


def _encode(tok, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tok(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )


@torch.no_grad()
def _accuracy(
    model, tok, held: pd.DataFrame, label_id: dict[str, int], cfg: FinetuneConfig
) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(held), cfg.batch_size):
        part = held.iloc[start : start + cfg.batch_size]
        logits = model(**_encode(tok, part["text"].tolist(), cfg.max_length)).logits
        truth = torch.tensor([label_id.get(v, -1) for v in part["label"]])
        correct += int((logits.argmax(-1) == truth).sum())
    return correct / len(held)
