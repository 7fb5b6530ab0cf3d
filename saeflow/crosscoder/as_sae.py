"""A layer's crosscoder in the form every per-model stage reads: an SAE and caches.

The feature statistics, examples, labels and viewer stages read an SAE folder
and activation caches per model × layer. The crosscoder joins them as a third
"model", ``crosscoder``, without a copy of any activation:

* ``results/activations/crosscoder/layer_{L}/{corpus}.h5`` is an HDF5 *virtual*
  dataset whose ``acts`` are the base cache's columns then the fine-tuned
  cache's (2D wide), read through from those files; the per-row columns
  (documents, windows, token ids) are the base cache's, copied (a few bytes
  per row). Source paths are stored relative to the virtual file, so a moved
  results folder still reads.
* ``results/sae/crosscoder/layer_{L}/sae`` is the crosscoder with the models'
  input scales folded into its weights, so that it reads the raw concatenation
  and reconstructs in each model's raw units: for the per-column scale S,
  W_enc ← W_enc·S, W_dec ← W_dec / S, b_dec ← b_dec / S gives exactly the same
  code and the reconstruction divided by S.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from saeflow.crosscoder.data import check_same_tokens
from saeflow.sae.model import TopKSAE
from saeflow.workflow.io import atomic_path

log = logging.getLogger(__name__)

ROW_COLUMNS = ("doc", "window", "token_id", "pos", "is_special", "doc_ids")
"""Per-row (and per-document) datasets copied from the base cache."""


@torch.no_grad()
def fold_input_scales(cc: TopKSAE, scales: Sequence[float]) -> TopKSAE:
    """The crosscoder `cc` (trained on [s_b·x_b, s_f·x_f]) as an SAE of [x_b, x_f].

    `scales` holds one factor per model, applied to its equal share of the
    input columns. The code is unchanged; the reconstruction comes out unscaled.
    """
    d = cc.shape.d_in // len(scales)
    s = torch.cat([torch.full((d,), float(v)) for v in scales]).to(cc.W_dec)
    folded = TopKSAE(cc.shape).to(cc.W_dec.device)
    folded.load_state_dict(cc.state_dict())
    folded.W_enc.mul_(s)
    folded.W_dec.div_(s)
    folded.b_dec.div_(s)
    return folded.eval()


def write_paired_cache(
    base: str | Path, finetuned: str | Path, out: str | Path
) -> None:
    """Write `out`: a virtual 2D-wide `acts` over the two caches, plus row columns."""
    base, finetuned, out = Path(base), Path(finetuned), Path(out)
    check_same_tokens(base, finetuned)
    with h5py.File(base, "r") as fb, h5py.File(finetuned, "r") as ff:
        ab, af = fb["acts"], ff["acts"]
        if ab.dtype != af.dtype:
            raise ValueError(
                f"{base} ({ab.dtype}) and {finetuned} ({af.dtype}): activation "
                "caches of one layer must share a dtype to be read side by side"
            )
        n, d = ab.shape
        layout = h5py.VirtualLayout(shape=(n, 2 * d), dtype=ab.dtype)
        for i, src in enumerate((base, finetuned)):
            rel = os.path.relpath(src, out.parent)
            layout[:, i * d : (i + 1) * d] = h5py.VirtualSource(
                rel, "acts", shape=(n, d)
            )
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            f.create_virtual_dataset("acts", layout, fillvalue=np.nan)
            for col in ROW_COLUMNS:
                if col in fb:
                    fb.copy(fb[col], f, col)
            # The base cache's attributes: model_ref and tokenizer still say how
            # to decode token_id (both models read the same tokens).
            f.attrs.update(fb.attrs)
            f.attrs["d_model"] = 2 * d
            f.attrs["pair"] = [str(base), str(finetuned)]
    log.info(
        "paired cache %s: %d rows × %d over %s and %s", out, n, 2 * d, base, finetuned
    )


def make_crosscoder_as_sae(
    crosscoder: str | Path,
    metrics: str | Path,
    base_caches: dict[str, str | Path],
    finetuned_caches: dict[str, str | Path],
    out_sae: str | Path,
    out_caches: dict[str, str | Path],
) -> None:
    """Write the folded crosscoder and one paired cache per corpus.

    `metrics` is the crosscoder's metrics.json, which holds the input scales.
    """
    scales = json.loads(Path(metrics).read_text())["scales"]
    fold_input_scales(TopKSAE.load(crosscoder), scales).save(out_sae)
    for corpus, out in out_caches.items():
        write_paired_cache(base_caches[corpus], finetuned_caches[corpus], out)
