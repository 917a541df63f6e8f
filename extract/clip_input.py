"""Decoded clips -> visual backbone input, the one place it is done (extraction and fine-tuning alike)."""

from __future__ import annotations

import torch
from torch import nn

from cavnet.extract.config import ClipSampling


class ClipNormalize(nn.Module):
    """``(B, T, S, S, 3)`` uint8 -> ``(B, 3, T, S, S)`` float32, ``(x - mean) / std`` per channel with the
    sampling's mean and std (pixel units 0-255); the statistics are buffers, not saved with weights."""

    def __init__(self, sampling: ClipSampling) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(sampling.mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(sampling.std).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return clips.permute(0, 4, 1, 2, 3).float().sub_(self.mean).div_(self.std)
