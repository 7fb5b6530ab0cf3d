"""Which torch device a config's `device` value means."""

from __future__ import annotations

import torch


def pick_device(device: str) -> str:
    """`auto` → cuda when available, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device=cuda but no CUDA device is visible")
    return device
