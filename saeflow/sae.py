"""The top-k sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse
autoencoders"), its losses, and safetensors save/load.

Each token keeps its k largest ReLU pre-activations; the decoder is a sparse
gather-sum of k unit-norm rows (`embedding_bag`), never a dense N×M product.
Inputs are rescaled by one scalar fitted at init so that E‖x‖² = D, which makes
learning rates transfer across layers and models.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from saeflow.io import atomic_path


@dataclass(frozen=True)
class SAEShape:
    """What is needed to rebuild an SAE: saved as cfg.json beside the weights."""

    d_in: int
    """Input (model hidden) dimension D."""
    n_latents: int
    """Dictionary size M."""
    k: int
    """Active latents per token."""


class EncoderOutput(NamedTuple):
    """Sparse code of a batch."""

    vals: torch.Tensor
    """[N, k] non-negative activations of the kept latents."""
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


class TopKSAE(nn.Module):
    """Top-k SAE with parameters W_enc [M, D], b_enc [M], W_dec [M, D], b_dec [D]."""

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

    @torch.no_grad()
    def init_from_data(self, sample: torch.Tensor) -> None:
        """Fit the input scale and set b_dec to the (scaled) data mean."""
        self.scale.fill_((sample.shape[1] / sample.pow(2).sum(1).mean()).sqrt())
        self.b_dec.copy_((sample * self.scale).mean(0))

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """x: [N, D] in input units → top-k code."""
        pre = F.relu(
            (x * self.scale - self.b_dec) @ self.W_enc.T + self.b_enc
        )  # (N, M)
        vals, idx = pre.topk(self.shape.k, dim=1, sorted=False)
        return EncoderOutput(vals, idx)

    def decode(self, code: EncoderOutput) -> torch.Tensor:
        """Sparse code → [N, D] reconstruction in input units."""
        out = F.embedding_bag(
            code.idx, self.W_dec, per_sample_weights=code.vals, mode="sum"
        )
        return (out + self.b_dec) / self.scale

    def forward(
        self, x: torch.Tensor, dead: torch.Tensor | None = None, aux_k: int = 0
    ) -> ForwardOutput:
        """Encode, decode and score a batch.

        dead: [M] bool mask of latents considered dead; when any are, the AuxK
        loss asks the top-`aux_k` dead latents to explain the residual.
        """
        code = self.encode(x)
        recon = self.decode(code)
        xs, rs = x * self.scale, recon * self.scale
        total_var = (xs - xs.mean(0)).pow(2).sum()
        fvu = (xs - rs).pow(2).sum() / total_var
        aux = torch.zeros((), device=x.device)
        if dead is not None and aux_k > 0 and bool(dead.any()):
            aux = self._aux_loss(xs, rs, dead, aux_k)
        return ForwardOutput(recon, code, fvu, aux)

    def _aux_loss(
        self, xs: torch.Tensor, rs: torch.Tensor, dead: torch.Tensor, aux_k: int
    ) -> torch.Tensor:
        dead_ids = dead.nonzero().squeeze(1)
        pre = F.relu((xs - self.b_dec) @ self.W_enc[dead_ids].T + self.b_enc[dead_ids])
        vals, j = pre.topk(min(aux_k, len(dead_ids)), dim=1, sorted=False)
        resid = (xs - rs).detach()
        aux_recon = F.embedding_bag(
            dead_ids[j], self.W_dec, per_sample_weights=vals, mode="sum"
        )
        return (resid - aux_recon).pow(2).sum() / (resid - resid.mean(0)).pow(2).sum()

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component along each decoder row (before a step).

        With `renormalize_decoder` after the step, rows stay unit-norm without
        the optimizer fighting the constraint (Bricken et al. 2023).
        """
        if self.W_dec.grad is not None:
            along = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)
            self.W_dec.grad -= along * self.W_dec

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
        """Rebuild an SAE saved with `save`."""
        folder = Path(folder)
        shape = SAEShape(**json.loads((folder / "cfg.json").read_text()))
        sae = cls(shape)
        sae.load_state_dict(load_file(folder / "sae.safetensors"))
        return sae.to(device)
