"""Make the fine-tuned model from unlabelled domain text (`finetune.objective: mlm`).

Domain-adaptive pre-training, as FinBERT began (further masked-LM training of
BERT on financial text, before any labels): encoders are trained to fill in
masked tokens (BERT's 15 %, 80/10/10 [MASK]/random/kept), causal LMs to predict
the next token. The held-out loss and perplexity of the base model and of the
fine-tuned one are measured on the same documents with the same masks, so a
model that learned nothing about the domain is visible as such, as the
classifier's accuracy is next to the majority baseline.

A checkpoint without a masked-LM head (all-MiniLM-L6-v2 ships the bare
BertModel: its output embeddings are tied to the input ones, but the
transform's dense layer, LayerNorm and output bias are new) gets one
initialised; `head_warmup_steps` train it alone, encoder frozen, before the
base model's loss is measured, so before and after compare the encoders.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

from saeflow.models.finetune import save_checkpoint, seeded_split
from saeflow.models.loading import load_tokenizer, resolve_model_ref
from saeflow.workflow.config import FinetuneConfig

log = logging.getLogger(__name__)

LMKind = Literal["masked_lm", "causal_lm"]


class LMFinetuneResult(NamedTuple):
    """What domain-adaptive training achieved on the held-out documents."""

    objective: LMKind
    """masked_lm (encoders) or causal_lm (next token)."""
    loss_before: float
    """Held-out cross-entropy per predicted token of the base model (nats)."""
    loss_after: float
    """The same of the fine-tuned model."""
    perplexity_before: float
    """exp(loss_before)."""
    perplexity_after: float
    """exp(loss_after)."""
    n_train: int
    """Documents trained on."""
    n_eval: int
    """Documents held out."""
    n_eval_tokens: int
    """Tokens predicted in the held-out loss (masked ones, or every next token)."""
    head_initialised: list[str]
    """Head weights the base checkpoint lacked, initialised here (empty: none)."""
    final_train_loss: float
    """Mean training loss over the last 20 steps."""


class LMBatch(NamedTuple):
    """One tokenized batch with its prediction targets."""

    inputs: dict[str, torch.Tensor]
    """Model inputs (input_ids masked for masked_lm)."""
    labels: torch.Tensor
    """[B, T] token ids to predict, -100 elsewhere (unshifted for causal_lm)."""


def lm_kind(ref: str) -> LMKind:
    """masked_lm when the architecture has a masked-LM form, else causal_lm."""
    config = AutoConfig.from_pretrained(resolve_model_ref(ref))
    if any(a.endswith("ForCausalLM") for a in config.architectures or []):
        return "causal_lm"
    return "masked_lm" if type(config) in MODEL_FOR_MASKED_LM_MAPPING else "causal_lm"


def split_documents(
    corpus: pd.DataFrame, eval_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every document with text split into (train, eval), seeded; labels unused."""
    docs = corpus[corpus["text"].str.strip().str.len() > 0].reset_index(drop=True)
    if len(docs) < 10:
        raise ValueError(
            f"domain-adaptive training needs at least 10 documents; found {len(docs)}"
        )
    return seeded_split(docs, eval_fraction, seed)


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    probability: float,
    mask_id: int,
    vocab_size: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of input_ids [B, T] at `maskable` [B, T] positions.

    Each maskable token is chosen with `probability`; of the chosen, 80 % become
    [MASK], 10 % a random token, 10 % stay (Devlin et al. 2019, 3.1). Returns
    (masked input_ids, labels: the chosen tokens' ids, -100 elsewhere).
    """
    chosen = (torch.rand(input_ids.shape, generator=gen) < probability) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=gen)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=gen)
    masked = torch.where(chosen & (roll < 0.8), mask_id, input_ids)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, labels


def make_lm_batch(
    tok, texts: Sequence[str], kind: LMKind, cfg: FinetuneConfig, gen: torch.Generator
) -> LMBatch:
    """Tokenize `texts` (truncated to cfg.max_length) and set their targets."""
    enc = tok(
        list(texts),
        padding=True,
        truncation=True,
        max_length=cfg.max_length,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    special = enc.pop("special_tokens_mask").bool()
    attended = enc["attention_mask"].bool()
    if kind == "causal_lm":
        labels = enc["input_ids"].masked_fill(~attended, -100)
        return LMBatch(dict(enc), labels)
    ids, labels = mask_tokens(
        enc["input_ids"],
        attended & ~special,
        cfg.mlm_probability,
        tok.mask_token_id,
        len(tok),
        gen,
    )
    return LMBatch({**enc, "input_ids": ids}, labels)


def token_nll(logits: torch.Tensor, labels: torch.Tensor, kind: LMKind):
    """(summed NLL [B], correct top-1 [B], targets [B]) per example.

    logits: [B, T, V]; labels: [B, T] with -100 where nothing is predicted;
    causal_lm predicts labels[:, t + 1] from position t.
    """
    if kind == "causal_lm":
        logits, labels = logits[:, :-1], labels[:, 1:]
    nll = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )  # (B, T)
    target = labels != -100
    correct = (logits.argmax(-1) == labels) & target
    return nll.sum(1), correct.sum(1), target.sum(1)


@torch.no_grad()
def held_out_loss(model, batches: Iterable[LMBatch], kind: LMKind) -> tuple[float, int]:
    """(cross-entropy per predicted token, tokens predicted) over `batches`."""
    model.eval()
    total, count = 0.0, 0
    for b in batches:
        nll, _, n = token_nll(model(**b.inputs).logits, b.labels, kind)
        total += float(nll.sum())
        count += int(n.sum())
    return total / max(count, 1), count


def _load(ref: str, kind: LMKind):
    auto = AutoModelForMaskedLM if kind == "masked_lm" else AutoModelForCausalLM
    model, info = auto.from_pretrained(resolve_model_ref(ref), output_loading_info=True)
    return model, sorted(info["missing_keys"])


def _train(
    model,
    params,
    tok,
    texts: pd.Series,
    kind: LMKind,
    cfg: FinetuneConfig,
    steps: int,
    seed: int,
    desc: str,
) -> list[float]:
    """`steps` AdamW steps over shuffled `texts` (linear decay); the losses."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(texts) / cfg.batch_size)
    order = torch.randperm(len(texts), generator=gen)
    losses: list[float] = []
    model.train()
    for step in tqdm(range(steps), desc=desc, unit="step"):
        pos = (step % per_epoch) * cfg.batch_size
        if step and pos == 0:
            order = torch.randperm(len(texts), generator=gen)
        rows = order[pos : pos + cfg.batch_size].numpy()
        batch = make_lm_batch(tok, texts.iloc[rows].tolist(), kind, cfg, gen)
        nll, _, n = token_nll(model(**batch.inputs).logits, batch.labels, kind)
        loss = nll.sum() / n.sum().clamp_min(1)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def finetune_lm(
    base_ref: str,
    corpus: pd.DataFrame,
    cfg: FinetuneConfig,
    seed: int,
    out_dir: str | Path,
) -> LMFinetuneResult:
    """Train `base_ref` on the corpus' text (masked or next token); save it.

    `out_dir` receives a transformers checkpoint (model with its LM head, and
    tokenizer) written atomically; AutoModel loads its bare backbone.
    """
    torch.manual_seed(seed)
    train, held = split_documents(corpus, cfg.eval_fraction, seed)
    tok = load_tokenizer(base_ref)
    kind = lm_kind(base_ref)
    model, missing = _load(base_ref, kind)
    if missing:
        log.warning("initialised head weights the checkpoint lacks: %s", missing)
    # Fixed masks: the same held-out targets before and after.
    eval_gen = torch.Generator().manual_seed(seed + 1)
    texts = held["text"].tolist()
    evals = [
        make_lm_batch(tok, texts[i : i + cfg.batch_size], kind, cfg, eval_gen)
        for i in range(0, len(texts), cfg.batch_size)
    ]
    if kind == "masked_lm" and missing and cfg.head_warmup_steps:
        # Only the head learns: the base encoder's loss is then its own.
        prefix = f"{model.base_model_prefix}."
        head = [p for n, p in model.named_parameters() if not n.startswith(prefix)]
        for p in model.base_model.parameters():
            p.requires_grad_(False)
        _train(
            model,
            head,
            tok,
            train["text"],
            kind,
            cfg,
            cfg.head_warmup_steps,
            seed + 2,
            "fit new MLM head",
        )
        for p in model.parameters():
            p.requires_grad_(True)
    before, n_tokens = held_out_loss(model, evals, kind)
    steps = max(1, int(round(cfg.epochs * math.ceil(len(train) / cfg.batch_size))))
    losses = _train(
        model,
        model.parameters(),
        tok,
        train["text"],
        kind,
        cfg,
        steps,
        seed,
        "finetune (LM)",
    )
    after, _ = held_out_loss(model, evals, kind)
    result = LMFinetuneResult(
        objective=kind,
        loss_before=before,
        loss_after=after,
        perplexity_before=math.exp(before),
        perplexity_after=math.exp(after),
        n_train=len(train),
        n_eval=len(held),
        n_eval_tokens=n_tokens,
        head_initialised=missing,
        final_train_loss=float(np.mean(losses[-20:])),
    )
    log.info("domain-adapted: %s", result)
    save_checkpoint(model, tok, out_dir)
    return result
