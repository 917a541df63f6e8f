"""Tiny CAV-Net configs, models and padded batches shared by the model tests (CPU sizes)."""

from __future__ import annotations

import torch

from cavnet.fuse.config import FusionConfig, preset_overrides
from cavnet.fuse.model import CAVNet

DV, DA, DT, C = 12, 8, 16, 5

VARIANTS = {
    "av": {},
    "v": {"modalities": "v"},
    "a": {"modalities": "a"},
    "no-self": {"self_attn": False},
    "no-cross": {"cross_attn": False},
    "mean-pool": {"pool": "mean"},
    "gate-normalize": {"gate_normalize": True},
    "late": {"fusion": "late"},
    "late-v": {"fusion": "late", "modalities": "v"},
    "linear": {"head": "linear"},
    "no-ffn-no-pos": {"mlp_ratio": 0.0, "pos_embed": False},
    "content-only": {"time_encoding": "none"},
    "paper-literal": preset_overrides("paper-literal"),
    "set-gate": {"gate": "set"},
    "set-gate-normalize": {"gate": "set", "gate_normalize": True},
}


def make_config(**kw) -> FusionConfig:
    base = dict(visual_dim=DV, audio_dim=DA, text_dim=DT, num_classes=C, d_model=16, heads=4,
                gate_hidden=8, max_len=12, dropout=0.1, attn_dropout=0.1)
    return FusionConfig(**{**base, **kw})


def make_model(seed: int = 0, **kw) -> CAVNet:
    torch.manual_seed(seed)
    return CAVNet(make_config(**kw)).eval()


def make_batch(n: int = 7, m: int = 5, seed: int = 1):
    """Three videos: full, padded in both streams, padded visual + no audio at all."""
    g = torch.Generator().manual_seed(seed)
    visual, audio = torch.randn(3, n, DV, generator=g), torch.randn(3, m, DA, generator=g)
    n_valid, m_valid = torch.tensor([n, 4, 2]), torch.tensor([m, 3, 0])
    vm = torch.arange(n)[None] < n_valid[:, None]
    am = torch.arange(m)[None] < m_valid[:, None]
    return visual, vm, audio, am, n_valid, m_valid
