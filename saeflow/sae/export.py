"""Export top-k SAEs to SAELens' and sparsify's layouts, and import them back.

* SAELens (≥ 6, ``SAE.load_from_disk``): one folder with ``cfg.json`` and
  ``sae_weights.safetensors`` holding W_enc [D, M], b_enc [M], W_dec [M, D],
  b_dec [D]; architecture ``topk`` computes topk(relu)((x - b_dec) @ W_enc +
  b_enc) @ W_dec + b_dec (sae_lens/saes/topk_sae.py).
* sparsify (EleutherAI, ``SparseCoder.load_from_disk``): one folder per
  hookpoint with ``cfg.json`` (SparseCoderConfig fields and d_in) and
  ``sae.safetensors`` holding encoder.weight [M, D], encoder.bias [M],
  W_dec [M, D], b_dec [D]; it encodes x - b_dec (sparsify/sparse_coder.py).

Neither has our input `scale`, so it is folded into the weights: ours encodes
W_enc (x·s - b_dec) + b_enc = (s·W_enc)(x - b_dec/s) + b_enc and decodes
(Σ v·W_dec + b_dec)/s = Σ v·(W_dec/s) + b_dec/s. Latent activations are
therefore the same as ours, and so is the top-k selection. Folding runs in
float64 and rounds once, so an exported SAE agrees with ours to float32
rounding, not bitwise; an imported SAE has scale 1 and exports to the same
tensors again.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from saeflow.sae.model import SAEShape, TopKSAE
from saeflow.workflow.io import atomic_path

Layout = Literal["saeflow", "saelens", "sparsify"]
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_VERSION = "6.0.0"
"""Written as metadata.sae_lens_version: SAELens rewrites configs older than 6."""
SPARSE_WEIGHTS = "sae.safetensors"  # ours and sparsify's
CFG = "cfg.json"


class SAEWeights(NamedTuple):
    """An SAE without input scale: pre = W_enc (x - b_dec) + b_enc."""

    W_enc: torch.Tensor
    """[M, D] encoder rows."""
    b_enc: torch.Tensor
    """[M] encoder bias."""
    W_dec: torch.Tensor
    """[M, D] decoder rows."""
    b_dec: torch.Tensor
    """[D] decoder bias, also subtracted before encoding."""


def folded_weights(sae: TopKSAE) -> SAEWeights:
    """Our weights with `scale` folded in, in the SAE's dtype, on the CPU."""
    if sae.shape.kind != "topk":
        raise ValueError(
            f"kind {sae.shape.kind!r}: only topk SAEs can be exported (batchtopk "
            "needs its threshold, relu its dense code; neither layout has them)"
        )
    s = sae.scale.detach().double().cpu()
    dtype = sae.W_enc.dtype

    def fold(t: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
        return (t.detach().double().cpu() * factor).to(dtype).contiguous()

    return SAEWeights(
        fold(sae.W_enc, s),
        fold(sae.b_enc, 1.0),
        fold(sae.W_dec, 1 / s),
        fold(sae.b_dec, 1 / s),
    )


def default_hook(layer: int, layout: Layout) -> str:
    """Hook name of hidden_states[layer] (layer ≥ 1) of a Hugging Face BERT.

    hidden_states[L] is the output of block L - 1: TransformerLens calls it
    ``blocks.{L-1}.hook_resid_post``; sparsify names the module,
    ``encoder.layer.{L-1}``.
    """
    if layer < 1:
        raise ValueError(f"layer {layer}: the embeddings have no default hook name")
    if layout == "saelens":
        return f"blocks.{layer - 1}.hook_resid_post"
    return f"encoder.layer.{layer - 1}"


def layer_of(path: str | Path) -> int | None:
    """The L of a `layer_{L}` component of `path`, if any (the workflow's paths)."""
    found = re.findall(r"(?:^|/)layer_(\d+)(?:/|$)", Path(path).as_posix())
    return int(found[-1]) if found else None


def export_saelens(
    sae: TopKSAE, folder: str | Path, hook_name: str, model_name: str | None = None
) -> Path:
    """Write `sae` into `folder` in SAELens' layout (architecture topk)."""
    w = folded_weights(sae)
    cfg = {
        "architecture": "topk",
        "d_in": sae.shape.d_in,
        "d_sae": sae.shape.n_latents,
        "k": sae.shape.k,
        "dtype": _dtype_name(w.W_enc.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": SAELENS_VERSION,
            "hook_name": hook_name,
            "model_name": model_name,
        },
    }
    tensors = {
        "W_enc": w.W_enc.T.contiguous(),  # SAELens computes x @ W_enc
        "b_enc": w.b_enc,
        "W_dec": w.W_dec,
        "b_dec": w.b_dec,
    }
    return _write(folder, cfg, tensors, SAELENS_WEIGHTS)


def export_sparsify(sae: TopKSAE, folder: str | Path, hookpoint: str) -> Path:
    """Write `sae` into `folder`/`hookpoint` in sparsify's layout; return that path."""
    w = folded_weights(sae)
    d, m = sae.shape.d_in, sae.shape.n_latents
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, m // d),  # unused: num_latents is set
        # False: folding the scale leaves decoder rows of norm 1/s, and sparsify
        # would renormalise them if training resumed.
        "normalize_decoder": False,
        "num_latents": m,
        "k": sae.shape.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": d,
    }
    tensors = {
        "encoder.weight": w.W_enc,
        "encoder.bias": w.b_enc,
        "W_dec": w.W_dec,
        "b_dec": w.b_dec,
    }
    return _write(Path(folder) / hookpoint, cfg, tensors, SPARSE_WEIGHTS)


def _write(folder: str | Path, cfg: dict, tensors: dict, weights: str) -> Path:
    # atomic_path replaces the whole folder: never a folder holding anything else.
    if Path(folder).is_dir():
        other = {p.name for p in Path(folder).iterdir()} - {CFG, weights}
        if other:
            raise FileExistsError(f"{folder} holds {sorted(other)[:3]}; not replacing")
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(tensors, tmp / weights)
        (tmp / CFG).write_text(json.dumps(cfg, indent=2) + "\n")
    return Path(folder)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def detect_layout(folder: str | Path) -> Layout:
    """Which layout `folder` holds, from its file names and tensor names."""
    folder = Path(folder)
    if (folder / SAELENS_WEIGHTS).exists():
        return "saelens"
    if not (folder / SPARSE_WEIGHTS).exists():
        hooks = sorted(p.parent.name for p in folder.glob(f"*/{SPARSE_WEIGHTS}"))
        hint = f"; sparsify hookpoints inside: {', '.join(hooks)}" if hooks else ""
        raise FileNotFoundError(f"{folder}: no SAE weights found{hint}")
    with safe_open(folder / SPARSE_WEIGHTS, framework="pt") as f:
        keys = set(f.keys())
    return "sparsify" if "encoder.weight" in keys else "saeflow"


def import_sae(folder: str | Path, device: str = "cpu") -> TopKSAE:
    """Load an SAE from our, SAELens' or sparsify's layout (in eval mode)."""
    layout = detect_layout(folder)
    if layout == "saeflow":
        return TopKSAE.load(folder, device)
    cfg = json.loads((Path(folder) / CFG).read_text())
    if layout == "saelens":
        shape, w = _read_saelens(Path(folder), cfg)
    else:
        shape, w = _read_sparsify(Path(folder), cfg)
    sae = TopKSAE(shape)
    with torch.no_grad():
        for name, t in w._asdict().items():
            getattr(sae, name).copy_(t)
    return sae.to(device).eval()


def _read_saelens(folder: Path, cfg: dict) -> tuple[SAEShape, SAEWeights]:
    _require(cfg, "architecture", "topk", folder)
    _require(cfg, "normalize_activations", "none", folder)
    _require(cfg, "reshape_activations", "none", folder)
    t = {k: v.double() for k, v in load_file(folder / SAELENS_WEIGHTS).items()}
    w_enc, b_enc, w_dec, b_dec = t["W_enc"].T, t["b_enc"], t["W_dec"], t["b_dec"]
    if not cfg.get("apply_b_dec_to_input", True):
        # x @ W_enc + b_enc = (x - b_dec) @ W_enc + (b_enc + b_dec @ W_enc)
        b_enc = b_enc + w_enc @ b_dec
    if cfg.get("rescale_acts_by_decoder_norm", False):
        # SAELens ranks pre·‖W_dec_i‖ and decodes acts/‖W_dec_i‖ · W_dec_i.
        norms = w_dec.norm(dim=1)
        w_enc, b_enc, w_dec = (
            w_enc * norms[:, None],
            b_enc * norms,
            w_dec / norms[:, None],
        )
    shape = SAEShape(d_in=cfg["d_in"], n_latents=cfg["d_sae"], k=cfg["k"])
    return shape, _float(SAEWeights(w_enc, b_enc, w_dec, b_dec))


def _read_sparsify(folder: Path, cfg: dict) -> tuple[SAEShape, SAEWeights]:
    _require(cfg, "activation", "topk", folder)
    _require(cfg, "transcode", False, folder)
    _require(cfg, "skip_connection", False, folder)
    t = load_file(folder / SPARSE_WEIGHTS)
    w = SAEWeights(t["encoder.weight"], t["encoder.bias"], t["W_dec"], t["b_dec"])
    m, d = w.W_enc.shape
    return SAEShape(d_in=d, n_latents=m, k=cfg["k"]), _float(w)


def _require(cfg: dict, key: str, want: object, folder: Path) -> None:
    if key in cfg and cfg[key] != want:
        raise ValueError(f"{folder}/{CFG}: {key}={cfg[key]!r}; only {want!r} loads")


def _float(w: SAEWeights) -> SAEWeights:
    return SAEWeights(*(t.float().contiguous() for t in w))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sae",
        required=True,
        help="SAE folder in any layout (ours: results/sae/{model}/layer_{L}/sae)",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=["saelens", "sparsify", "saeflow"],
        help="layout to write (saeflow: ours, to use a foreign SAE in the workflow)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="folder to write (sparsify: the hookpoint folder goes inside)",
    )
    parser.add_argument(
        "--hook",
        default=None,
        help="hook name (saelens) or hookpoint (sparsify); default from the "
        "layer_{L} in --sae: blocks.{L-1}.hook_resid_post / encoder.layer.{L-1}",
    )
    parser.add_argument(
        "--model-name", default=None, help="saelens: metadata.model_name"
    )


def main(args: argparse.Namespace) -> int:
    """Convert one SAE; print where it went."""
    sae = import_sae(args.sae)
    if args.format == "saeflow":
        sae.save(args.out)
        print(f"{args.out}: saeflow layout")
        return 0
    hook = args.hook
    if hook is None:
        layer = layer_of(args.sae)
        if layer is None:
            print(f"{args.sae}: no layer_{{L}} in the path; give --hook")
            return 1
        hook = default_hook(layer, args.format)
    if args.format == "saelens":
        out = export_saelens(sae, args.out, hook, args.model_name)
    else:
        out = export_sparsify(sae, args.out, hook)
    print(f"{out}: {args.format} layout, hook {hook}")
    return 0
