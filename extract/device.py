"""Which torch device a run uses (``auto`` picks CUDA when there is one; asking for CUDA without one is an
error), and the one rule for how many decode processes feed it."""

from __future__ import annotations

import os

import torch

from cavnet.configs import check_device
from cavnet.errors import CavnetError


def resolve_device(device: str) -> torch.device:
    """``'auto'`` | ``'cpu'`` | ``'cuda'`` | ``'cuda:N'`` -> a ``torch.device`` that exists here; anything
    else (``meta``, ``mps``, a CUDA index this machine lacks, garbage) is one ``CavnetError``. The one rule
    of every command: configs check the name (``configs.check_device``), this checks the machine."""
    check_device("--device", device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CavnetError(f"--device {device}: no CUDA device is available here")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise CavnetError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return torch.device(device)


def gpu_count() -> int:
    """CUDA devices here (0 when CUDA is missing or broken)."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install means CPU workers
        return 0


def decode_workers(requested: int | None, device: str, processes: int | None = None, remote: bool = False) -> int:
    """Decode processes for each process that runs backbones (``--decode-workers``; every command that
    decodes video uses this rule): ``requested`` when given. Else, when the backbones run on CUDA here
    (``device`` cuda, or auto with a GPU), the cores left over per process, ``cores // processes - 1`` and
    at least 1 (``processes``: one per GPU unless given), so decoding overlaps the GPU; otherwise 0, decoding
    in the process itself: on the CPU the backbones already use every core, and on a ``remote`` cluster
    this machine's cores say nothing about the workers'."""
    if requested is not None:
        return requested
    gpus = 0 if remote or not (device == "auto" or device.startswith("cuda")) else gpu_count()
    if not gpus:
        return 0
    return max(1, (os.cpu_count() or 1) // (processes or gpus) - 1)

