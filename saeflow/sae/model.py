"""Sparse autoencoders (top-k, batch top-k, L1 ReLU), their losses, save/load.

* ``topk`` (default; Gao et al. 2024, "Scaling and evaluating sparse
  autoencoders"): each token keeps its k largest ReLU pre-activations.
* ``batchtopk`` (Bussmann et al. 2024): a batch of N tokens keeps its N·k largest
  pre-activations, so busy tokens use more latents than quiet ones; at inference a
  threshold (running mean of the training batches' cut-off) replaces the batch.
  Candidates are each token's top ``BATCHTOPK_CAP · k`` latents, so memory stays
  O(N·k) (a token can use at most that many latents).
* ``relu``: ReLU code trained with an L1 penalty (Bricken et al. 2023), dense.

Encoding and decoding go through :mod:`kernels` (Triton on CUDA, a fused CPU path
otherwise; ``SAEFLOW_DISABLE_TRITON=1`` forces the torch references): the dense
N×M pre-activation is never stored for the sparse kinds. Inputs are rescaled by
one scalar fitted at init so that E‖x‖² = D, which makes learning rates transfer
across layers and models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from kernels.dispatch import sparse_decode, topk_encode
from saeflow.workflow.io import atomic_path

SAEKind = Literal["topk", "batchtopk", "relu"]
BATCHTOPK_CAP = 4
"""batchtopk: at most this many times k latents per token."""
AUX_DENSE_FACTOR = 4
"""AuxK decodes with one dense matmul over the dead latents while there are at
most this many times aux_k of them; beyond, gathering aux_k decoder rows per
token is faster (crossover 3–6 × aux_k on the CPU, docs/performance.md)."""
THRESHOLD_MOMENTUM = 0.99
"""batchtopk: weight of the old value in the running inference threshold."""
PROJECT_CHUNK_ELEMS = 1 << 20
"""project_decoder_grad works on this many decoder entries at a time: its
temporaries (4 MiB in fp32) then stay under glibc's mmap threshold and reuse
heap pages, where whole-matrix ones (75 MB at D = 768, M = 24,576) were mapped
and faulted in afresh every step."""

Reduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor over data-parallel ranks (the identity in one process)."""


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Autocast's dtype where it is on, else t's. The kernels are custom autograd
    Functions, which autocast does not cast, so without this they would get the
    fp32 activations and run the GPU encoder without bf16 tensor cores."""
    device = t.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


@dataclass(frozen=True)
class SAEShape:
    """What is needed to rebuild an SAE: saved as cfg.json beside the weights."""

    d_in: int
    """Input (model hidden) dimension D."""
    n_latents: int
    """Dictionary size M."""
    k: int
    """Active latents per token (batchtopk: on average; relu: unused)."""
    kind: SAEKind = "topk"
    """Sparsity mechanism."""


class EncoderOutput(NamedTuple):
    """Sparse code of a batch (relu: all M latents, in order)."""

    vals: torch.Tensor
    """[N, k] non-negative activations of the kept latents (0 = not active)."""
    idx: torch.Tensor
    """[N, k] int64 latent indices."""


class ForwardOutput(NamedTuple):
    """Reconstruction and losses of one batch (losses in normalised units)."""

    recon: torch.Tensor
    """[N, D] reconstruction, in the input's units."""
    code: EncoderOutput
    """The sparse code."""
    fvu: torch.Tensor
    """Scalar: ‖x - x̂‖² / ‖x - mean(x)‖² over the batch."""
    aux_loss: torch.Tensor
    """Scalar AuxK loss (0 when no latent is dead)."""
    l1: torch.Tensor | None = None
    """Scalar mean over tokens of Σ_i f_i / √D (the relu kind's sparsity penalty)."""


class TopKSAE(nn.Module):
    """SAE with parameters W_enc [M, D], b_enc [M], W_dec [M, D], b_dec [D].

    Named for the default kind; `shape.kind` selects top-k, batch top-k or ReLU.
    """

    def __init__(self, shape: SAEShape, seed: int = 0) -> None:
        super().__init__()
        self.shape = shape
        gen = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(shape.n_latents, shape.d_in, generator=gen)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        # Encoder starts as the decoder's transpose (Gao et al. 2024, sec. 2.4).
        self.W_enc = nn.Parameter(w_dec.clone())
        self.b_enc = nn.Parameter(torch.zeros(shape.n_latents))
        self.b_dec = nn.Parameter(torch.zeros(shape.d_in))
        self.register_buffer("scale", torch.ones(()))
        if shape.kind == "batchtopk":
            self.register_buffer("threshold", torch.zeros(()))
            self.register_buffer("threshold_steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def init_from_data(self, sample: torch.Tensor) -> None:
        """Fit the input scale and set b_dec to the (scaled) data mean."""
        self.scale.fill_((sample.shape[1] / sample.pow(2).sum(1).mean()).sqrt())
        self.b_dec.copy_((sample * self.scale).mean(0))

    @property
    def code_width(self) -> int:
        """Columns of an encoded batch: k (topk), BATCHTOPK_CAP·k (batchtopk, the
        unkept ones 0), every latent (relu)."""
        kind, k, m = self.shape.kind, self.shape.k, self.shape.n_latents
        return {"topk": k, "batchtopk": min(m, BATCHTOPK_CAP * k)}.get(kind, m)

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """x: [N, D] in input units → code (batchtopk: batch-wide in training mode)."""
        return self._encode_scaled(x * self.scale)

    def _encode_scaled(self, xs: torch.Tensor) -> EncoderOutput:
        w, b = self._enc_weights(_compute_dtype(xs))
        kind, k, m = self.shape.kind, self.shape.k, self.shape.n_latents
        if kind == "relu":
            vals = F.relu(F.linear((xs - self.b_dec).to(w.dtype), w, b))  # (N, M)
            return EncoderOutput(
                vals, torch.arange(m, device=xs.device).expand_as(vals)
            )
        if kind == "topk":
            return EncoderOutput(*topk_encode(xs, w, b, k, self.b_dec))
        vals, idx = topk_encode(xs, w, b, self.code_width, self.b_dec)
        if self.training:
            cut = vals.detach().flatten().topk(min(vals.numel(), len(vals) * k)).values
            thr = cut[-1]
            with torch.no_grad():  # plain mean over the first steps, then an EMA
                self.threshold_steps += 1
                w = max(1.0 - THRESHOLD_MOMENTUM, 1.0 / self.threshold_steps.item())
                self.threshold.lerp_(thr.float(), w)
        else:
            thr = self.threshold
        return EncoderOutput(torch.where(vals >= thr, vals, 0.0), idx)

    def _enc_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # Under autocast the kernels run in its dtype on casts of fp32 masters.
        if dtype != self.W_enc.dtype:
            return self.W_enc.to(dtype), self.b_enc.to(dtype)
        return self.W_enc, self.b_enc

    def decode(self, code: EncoderOutput) -> torch.Tensor:
        """Code → [N, D] reconstruction in input units."""
        return self._decode_scaled(code) / self.scale

    def _decode_scaled(self, code: EncoderOutput) -> torch.Tensor:
        w = self.W_dec.to(code.vals.dtype)
        if self.shape.kind == "relu":
            return code.vals @ w + self.b_dec
        return sparse_decode(code.vals, code.idx, w, self.b_dec.to(code.vals.dtype))

    def forward(
        self,
        x: torch.Tensor,
        dead: torch.Tensor | None = None,
        aux_k: int = 0,
        reduce: Reduce = _identity,
    ) -> ForwardOutput:
        """Encode, decode and score a batch.

        dead: [M] bool mask of latents considered dead; when any are, the AuxK
        loss asks the top-`aux_k` dead latents to explain the residual.
        reduce: sums over data-parallel ranks, so that each rank's FVU is its share
        of the global batch's (the variance is the global batch's).
        """
        xs = x * self.scale
        code = self._encode_scaled(xs)
        rs = self._decode_scaled(code).float()
        xs = xs.float()
        total_var = _total_var(xs, reduce)
        fvu = (xs - rs).pow(2).sum() / total_var
        aux = torch.zeros((), device=x.device)
        if dead is not None and aux_k > 0 and bool(dead.any()):
            aux = self._aux_loss(xs, rs, dead, aux_k, reduce)
        l1 = None
        if self.shape.kind == "relu":
            n = reduce(torch.tensor(float(len(x)), device=x.device))
            l1 = code.vals.float().sum() / n / self.shape.d_in**0.5
        return ForwardOutput(rs / self.scale, code, fvu, aux, l1)

    def _aux_loss(
        self,
        xs: torch.Tensor,
        rs: torch.Tensor,
        dead: torch.Tensor,
        aux_k: int,
        reduce: Reduce,
    ) -> torch.Tensor:
        dead_ids = dead.nonzero().squeeze(1)
        k = min(aux_k, len(dead_ids))
        # Softplus, not the ReLU of the main path: a latent goes dead because its
        # pre-activation is negative on every token, where a ReLU passes no gradient
        # and the latent could never come back. Dense over the dead latents only.
        pre = F.linear(xs - self.b_dec, self.W_enc[dead_ids], self.b_enc[dead_ids])
        top, j = pre.topk(k, dim=1, sorted=False)
        vals = F.softplus(top)
        resid = (xs - rs).detach()
        w_dead = self.W_dec[dead_ids]
        if len(dead_ids) <= AUX_DENSE_FACTOR * k:
            # vals' dtype, not pre's: CUDA autocast runs softplus in fp32 on bf16.
            aux_recon = vals.new_zeros(pre.shape).scatter(1, j, vals) @ w_dead
        else:
            aux_recon = sparse_decode(vals, j, w_dead, torch.zeros_like(self.b_dec))
        return (resid - aux_recon).pow(2).sum() / _total_var(resid, reduce)

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component along each decoder row (before a step).

        With `renormalize_decoder` after the step, rows stay unit-norm without
        the optimizer fighting the constraint (Bricken et al. 2023).
        """
        if self.W_dec.grad is None:
            return
        rows = max(1, PROJECT_CHUNK_ELEMS // self.shape.d_in)
        for start in range(0, self.shape.n_latents, rows):
            grad = self.W_dec.grad[start : start + rows]
            w = self.W_dec[start : start + rows]
            # Not addcmul_: its fused multiply-add rounds differently, and the
            # SAEs would no longer match earlier runs bit for bit.
            grad -= (grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def fold_decoder_norms(self) -> None:
        """Make decoder rows unit-norm, moving each row's norm into its latent
        (encoder row and bias), so every latent contributes as before.

        Exact for ReLU codes; for top-k kinds latents are then ranked by their
        contribution rather than their pre-activation, which measured no worse
        (docs/performance.md). The batchtopk threshold is in pre-activation
        units and is kept.
        """
        norms = self.W_dec.norm(dim=1).clamp_min(1e-8)
        self.W_dec /= norms[:, None]
        self.W_enc *= norms[:, None]
        self.b_enc *= norms

    @torch.no_grad()
    def renormalize_decoder(self) -> None:
        """Scale decoder rows back to unit norm (after a step)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def save(self, folder: str | Path) -> None:
        """Write `sae.safetensors` and `cfg.json` into `folder`, atomically."""
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            tensors = {
                k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()
            }
            save_file(tensors, tmp / "sae.safetensors")
            (tmp / "cfg.json").write_text(
                json.dumps(asdict(self.shape), indent=2) + "\n"
            )

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> TopKSAE:
        """Rebuild an SAE saved with `save` (in eval mode)."""
        folder = Path(folder)
        shape = SAEShape(**json.loads((folder / "cfg.json").read_text()))
        sae = cls(shape)
        sae.load_state_dict(load_file(folder / "sae.safetensors"))
        return sae.to(device).eval()


def _total_var(x: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """Σ‖x - mean(x)‖² over the (global) batch, from per-rank sums."""
    if reduce is _identity:
        return (x - x.mean(0)).pow(2).sum()
    n = reduce(torch.tensor(float(len(x)), device=x.device))
    mean = reduce(x.sum(0)) / n
    return reduce((x - mean).pow(2).sum())
