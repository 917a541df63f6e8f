"""Which torch device a run uses: ``auto`` picks CUDA when there is one; asking for CUDA without one is an error."""

from __future__ import annotations

import torch

from cavnet.errors import CavnetError


def resolve_device(device: str) -> torch.device:
    """``'auto'`` | ``'cpu'`` | ``'cuda'`` | ``'cuda:N'`` -> a ``torch.device`` that exists here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CavnetError(f"--device {device}: no CUDA device is available here")
    try:
        return torch.device(device)
    except RuntimeError:
        raise CavnetError(f"--device {device}: not a device name (auto, cpu, cuda, cuda:N)") from None
