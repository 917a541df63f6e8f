"""The clock both streams share (not in the paper; docs/model.md, "Audio-visual synchrony").

Each clip and each audio segment gets a time, the centre of its span as a fraction of the video. The
shared time encoding uses it twice: a sinusoidal embedding of the time added to the tokens of both streams
(when things happen, and so in which order), and a relative bias on the cross-attention scores (what
happens at the same time in the other stream).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from cavnet.fuse.config import FusionConfig


def token_times(mask: torch.Tensor) -> torch.Tensor:
    """Time of each token as a fraction of the video: the k-th valid token of L is at (k + 0.5) / L.

    The clips and the audio segments of a video are each spread uniformly over it (extract/sampling.py), so
    token k of either stream covers about the same span: with as many valid segments as clips, segment k is
    centred on clip k. mask (B, L) bool -> (B, L) float in (0, 1); 0 at padded tokens.
    """
    m = mask.float()
    return (m.cumsum(dim=1) - 0.5) / m.sum(dim=1, keepdim=True).clamp_min(1.0) * m


class TimeBias(nn.Module):
    """Relative time bias of one attention: head h adds -s_h |t_q - t_k| to its scores before the softmax.

    The slopes s_h = exp(log_slope_h) are learned, one per head, initialised geometrically from 1 to 64 over
    the heads: at 10 tokens a neighbour one token away gets -0.1 in the widest head (nearly content-only) and
    -6.4 in the narrowest (attends at the same time). t_q (B, Lq), t_k (B, Lk) -> bias (B, heads, Lq, Lk).
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        h = config.heads
        init = torch.full((1,), 8.0) if h == 1 else 64.0 ** (torch.arange(h, dtype=torch.float32) / (h - 1))
        self.log_slope = nn.Parameter(init.log())

    def forward(self, t_q: torch.Tensor, t_k: torch.Tensor) -> torch.Tensor:
        gap = (t_q[:, None, :, None] - t_k[:, None, None, :]).abs()  # (B, 1, Lq, Lk)
        return -self.log_slope.exp()[None, :, None, None] * gap


def time_embedding(times: torch.Tensor, dim: int, max_len: int) -> torch.Tensor:
    """Sinusoidal embedding of times in [0, 1]: sin and cos of 2 pi f t for dim / 2 frequencies f spread
    geometrically from half a cycle per video to max_len / 2 cycles (one per token at max_len tokens).

    times (B, L) -> (B, L, dim); an odd ``dim`` leaves the last feature 0.
    """
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=times.device) / max(1, half - 1)
    freq = 0.5 * float(max_len) ** steps  # cycles per video
    angle = 2 * math.pi * times.float()[..., None] * freq  # (B, L, half)
    out = torch.cat([angle.sin(), angle.cos()], dim=-1)
    return nn.functional.pad(out, (0, dim - 2 * half))
