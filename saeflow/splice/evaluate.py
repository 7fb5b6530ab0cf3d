"""Spliced-in evaluation: run a model with one layer replaced by an SAE's output.

The hidden state hidden_states[L] (0 = embeddings, L = output of block L, as in
saeflow/activations/cache.py) is replaced, at the token positions an SAE is trained on
(attention mask, minus special tokens when activations.special_tokens is
`exclude`), by f(x) for four conditions:

- clean: f(x) = x (the model as it is);
- sae:   f(x) = decode(encode(x));
- zero:  f(x) = 0;
- mean:  f(x) = the mean of the layer over the evaluated tokens' clean activations.

What is compared depends on the model's head:

- classifier: accuracy, cross-entropy against the true labels, KL(clean ‖ condition)
  of the class probabilities;
- causal LM: next-token cross-entropy;
- masked LM (finetune.objective mlm): cross-entropy and top-1 accuracy on the
  masked tokens, the same seeded masks in every condition;
- encoder (no head): cosine of the mean-pooled (attention mask) final hidden state
  to the clean one; its loss is 1 - cosine.

Fraction of loss recovered = (L_zero - L) / (L_zero - L_clean), for sae and mean.

Texts: documents the SAE never saw, i.e. those in the held-out tail of its
domain activation cache (sae.holdout_fraction, saeflow/sae/data.py). A classifier
needs labelled ones; where the tail holds none it falls back to the fine-tuning's
held-out split, which the SAE did train on; the output's `texts` says which.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from saeflow.models.domain_lm import mask_tokens, token_nll
from saeflow.models.loading import ModelKind, token_batches

log = logging.getLogger(__name__)

Reconstruct = Callable[[torch.Tensor], torch.Tensor]
CONDITIONS = ("clean", "sae", "zero", "mean")


def fraction_recovered(l_clean: float, l_sae: float, l_zero: float) -> float:
    """(L_zero - L_sae) / (L_zero - L_clean): 1 = as clean, 0 = as zero-ablated.

    NaN when zero-ablating the layer does not change the loss (nothing to recover).
    """
    if l_zero == l_clean:
        return float("nan")
    return (l_zero - l_sae) / (l_zero - l_clean)


def layer_module(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The module whose output is hidden_states[layer] (BERT or Llama-style).

    Layer 0 is the embeddings; layer L the L-th block (Llama's last: the final
    norm, as in transformers' hidden_states). `base_model` is the
    backbone under a task head (BertForSequenceClassification.bert,
    LlamaForCausalLM.model) or the model itself.
    """
    base = model.base_model
    if hasattr(base, "encoder"):  # BERT-style
        blocks, embed = base.encoder.layer, base.embeddings
    elif hasattr(base, "layers"):  # Llama-style
        blocks, embed = base.layers, base.embed_tokens
        if layer == len(blocks):
            # transformers reports the last hidden state after the final norm.
            return base.norm
    else:
        raise ValueError(f"no known block list in {type(model).__name__}")
    if not 0 <= layer <= len(blocks):
        raise ValueError(f"layer {layer}: {type(model).__name__} has {len(blocks)}")
    return embed if layer == 0 else blocks[layer - 1]


@contextlib.contextmanager
def spliced(
    model: torch.nn.Module, layer: int, f: Reconstruct, mask: torch.Tensor
) -> Iterator[None]:
    """Within the block, hidden_states[layer] at `mask` [B, T] positions is f(x).

    f gets x: [n, D] (the masked positions' clean values) and returns [n, D];
    other positions (padding, special tokens) keep their values.
    """

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output  # (B, T, D)
        new = hidden.clone()
        new[mask] = f(hidden[mask]).to(hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = layer_module(model, layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class SpliceBatch(NamedTuple):
    """One tokenized batch of evaluated texts."""

    inputs: dict[str, torch.Tensor]
    """Tokenizer output, on the model's device."""
    mask: torch.Tensor
    """[B, T] bool: positions spliced (attended, and not special if excluded)."""
    labels: torch.Tensor | None
    """[B] class ids (classifier only)."""
    lm_labels: torch.Tensor | None = None
    """[B, T] masked tokens' ids, -100 elsewhere (masked LM only)."""


def make_batches(
    tok,
    texts: Sequence[str],
    labels: Sequence[int] | None,
    max_length: int,
    batch_size: int,
    exclude_special: bool,
    device: str,
    mlm_probability: float | None = None,
    seed: int = 0,
) -> list[SpliceBatch]:
    """Tokenize `texts` (truncated to max_length) into batches.

    With `mlm_probability` (masked LM), tokens are masked as in training
    (saeflow.models.domain_lm.mask_tokens), seeded, and become the targets.
    """
    batches = []
    gen = torch.Generator().manual_seed(seed)
    for start, enc, mask in token_batches(
        tok, texts, max_length, batch_size, exclude_special, device
    ):
        y = None if labels is None else torch.tensor(labels[start : start + batch_size])
        inputs, lm_labels = dict(enc), None
        if mlm_probability is not None:
            ids = enc["input_ids"].cpu()
            special = torch.tensor(
                [
                    tok.get_special_tokens_mask(r, already_has_special_tokens=True)
                    for r in ids.tolist()
                ]
            ).bool()
            attended = enc["attention_mask"].cpu().bool()
            masked, lm_labels = mask_tokens(
                ids,
                attended & ~special,
                mlm_probability,
                tok.mask_token_id,
                len(tok),
                gen,
            )
            inputs["input_ids"], lm_labels = masked.to(device), lm_labels.to(device)
        batches.append(
            SpliceBatch(inputs, mask, None if y is None else y.to(device), lm_labels)
        )
    return batches


def _outputs(model, kind: ModelKind, batch: SpliceBatch) -> torch.Tensor:
    """Per-example result: logits [B, C], pooled [B, D], next-token NLL [B, T-1]
    or, masked LM, (summed NLL, correct) over masked tokens [B, 2]."""
    out = model(**batch.inputs)
    if kind == "classifier":
        return out.logits.float()
    if kind == "masked_lm":
        nll, correct, _ = token_nll(out.logits, batch.lm_labels, "masked_lm")
        return torch.stack([nll, correct.float()], 1)
    attn = batch.inputs["attention_mask"]
    if kind == "encoder":
        m = attn.unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * m).sum(1).float() / m.sum(1).clamp_min(1)
    ids = batch.inputs["input_ids"]
    nll = F.cross_entropy(
        out.logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none"
    )
    return nll * attn[:, 1:]  # padding targets count 0


def layer_mean(
    model: torch.nn.Module, layer: int, batches: Sequence[SpliceBatch]
) -> torch.Tensor:
    """[D] mean of hidden_states[layer] over the batches' spliced positions."""
    total, count = 0.0, 0

    def capture(x: torch.Tensor) -> torch.Tensor:
        nonlocal total, count
        total = total + x.double().sum(0)
        count += len(x)
        return x

    for batch in batches:
        with spliced(model, layer, capture, batch.mask):
            model(**batch.inputs)
    return (total / max(count, 1)).float()


def _metrics(
    kind: ModelKind, clean: torch.Tensor, out: torch.Tensor, labels, n_tokens
) -> dict[str, float]:
    """Metrics of one condition; `loss` is what fraction recovered compares."""
    if kind == "classifier":
        logp = out.log_softmax(-1)
        clean_logp = clean.log_softmax(-1)
        kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1)
        return {
            "accuracy": float((out.argmax(-1) == labels).float().mean()),
            "loss": float(F.nll_loss(logp, labels)),
            "kl_from_clean": float(kl.mean()),
        }
    if kind == "encoder":
        cos = F.cosine_similarity(out, clean, dim=-1)
        return {"cosine_to_clean": float(cos.mean()), "loss": float(1 - cos.mean())}
    if kind == "masked_lm":
        return {
            "loss": float(out[:, 0].sum() / n_tokens),
            "accuracy": float(out[:, 1].sum() / n_tokens),
        }
    return {"loss": float(out.sum() / n_tokens)}


@torch.no_grad()
def splice_eval(
    model: torch.nn.Module,
    kind: ModelKind,
    layer: int,
    reconstruct: Reconstruct,
    batches: Sequence[SpliceBatch],
) -> dict:
    """Clean, SAE-spliced, zero- and mean-ablated results of `model` at `layer`.

    Returns {"conditions": {name: metrics}, "n_docs", "n_tokens_spliced",
    "sae_fvu"}. `loss` per condition is the classifier's cross-entropy against
    the labels, the LM's next-token or masked-token cross-entropy, or the
    encoder's 1 - cosine to clean; sae and mean also get `fraction_recovered`.
    `sae_fvu` is ‖x - f(x)‖² / ‖x - mean‖² of `reconstruct` on the spliced tokens.
    """
    mean = layer_mean(model, layer, batches)
    err = {"sse": 0.0, "var": 0.0}

    def sae(x: torch.Tensor) -> torch.Tensor:
        r = reconstruct(x)
        err["sse"] += float((x.float() - r.float()).pow(2).sum())
        err["var"] += float((x.float() - mean).pow(2).sum())
        return r

    fns = {
        "clean": lambda x: x,
        "sae": sae,
        "zero": torch.zeros_like,
        "mean": lambda x: mean.expand_as(x),
    }
    results: dict[str, list[torch.Tensor]] = {name: [] for name in CONDITIONS}
    for batch in batches:
        for name in CONDITIONS:
            with spliced(model, layer, fns[name], batch.mask):
                out = _outputs(model, kind, batch)
            # LM results are [B, T-1]: sum per example so batches concatenate.
            results[name].append(out.sum(1) if kind == "causal_lm" else out)
    labels = torch.cat([b.labels for b in batches]) if kind == "classifier" else None
    if kind == "masked_lm":
        n_targets = sum(int((b.lm_labels != -100).sum()) for b in batches)
    else:
        n_targets = sum(int(b.inputs["attention_mask"][:, 1:].sum()) for b in batches)
    out = {name: torch.cat(parts) for name, parts in results.items()}
    conditions = {
        name: _metrics(kind, out["clean"], out[name], labels, n_targets)
        for name in CONDITIONS
    }
    loss = {name: m["loss"] for name, m in conditions.items()}
    for name in ("sae", "mean"):
        conditions[name]["fraction_recovered"] = fraction_recovered(
            loss["clean"], loss[name], loss["zero"]
        )
    return {
        "kind": kind,
        "layer": layer,
        "conditions": conditions,
        "n_docs": sum(len(b.mask) for b in batches),
        "n_tokens_spliced": sum(int(b.mask.sum()) for b in batches),
        "sae_fvu": err["sse"] / max(err["var"], 1e-12),
    }


class EvalTexts(NamedTuple):
    """The documents a spliced evaluation runs on."""

    texts: list[str]
    labels: list[int] | None
    """Class ids (classifier only)."""
    source: str
    """`sae_holdout`: the SAE never saw them; `finetune_eval`: the classifier
    never trained on them, but the SAE did (see `select_texts`)."""


def heldout_doc_ids(cache: str | Path, holdout_fraction: float) -> list[str]:
    """Documents whose every row lies in the cache's held-out tail (data.py)."""
    with h5py.File(cache, "r") as f:
        doc = f["doc"][:]
        doc_ids = f["doc_ids"].asstr()[:]
    cut = int(len(doc) * (1.0 - holdout_fraction))
    held = np.setdiff1d(np.unique(doc[cut:]), doc[:cut])
    return [str(doc_ids[i]) for i in held]


def select_texts(
    corpus: pd.DataFrame,
    heldout_ids: Sequence[str],
    label_id: dict[str, int] | None,
    finetune_eval: pd.DataFrame | None,
    max_docs: int,
    seed: int,
) -> EvalTexts:
    """Held-out documents of the SAE's domain cache, as many as max_docs (seeded).

    A classifier needs labels: the labelled held-out documents, or when there
    are none (the default run, whose cache tail is the unlabelled real news
    appended after the synthetic headlines) the fine-tuning's held-out split.
    """
    rows = corpus[corpus["doc_id"].isin(set(heldout_ids))]
    source = "sae_holdout"
    if label_id is not None:
        rows = rows[rows["label"].isin(label_id)]
        if rows.empty and finetune_eval is not None:
            rows, source = (
                finetune_eval[finetune_eval["label"].isin(label_id)],
                ("finetune_eval"),
            )
    if rows.empty:
        raise ValueError("no held-out documents to evaluate the spliced model on")
    if len(rows) > max_docs:
        pick = np.random.default_rng(seed).choice(len(rows), max_docs, replace=False)
        rows = rows.iloc[np.sort(pick)]
    labels = None if label_id is None else [label_id[v] for v in rows["label"]]
    return EvalTexts(rows["text"].tolist(), labels, source)
