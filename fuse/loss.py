"""Losses of stage two: the language-guided contrastive loss (paper eq. 9, the CLIP way) and plain
cross-entropy for the linear-head baseline.

ContrastiveLoss is CLIP's symmetric InfoNCE with two changes the design asks for: rows of the same
group (same class, or same video id) are all positives, with the target spread uniformly over them, so
two videos of one class in a batch never push each other's text away; and the temperature is learned as
``logit_scale = log(1 / tau)``, initialised to log(1 / 0.07) and clamped at log(100).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ContrastiveLoss(nn.Module):
    """Symmetric video<->text contrastive loss with a learnable temperature.

    forward(video (B, D), text (B, D), groups (B,) long) -> scalar.
    logits = exp(logit_scale) * norm(video) @ norm(text).T; the target of row i is uniform over the
    j with groups[j] == groups[i]; loss = (CE(video->text) + CE(text->video)) / 2.
    For plain video-text pairs pass groups = arange(B) (or the video ids).
    """

    def __init__(self, init_temperature: float = 0.07, max_logit_scale: float = 100.0) -> None:
        super().__init__()
        if init_temperature <= 0 or max_logit_scale <= 0:
            raise ValueError("init_temperature and max_logit_scale must be positive")
        self.max_log_scale = math.log(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at max_logit_scale (differentiable below the clamp)."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the stored parameter in place; call after each optimizer step (as CLIP does)."""
        self.logit_scale.clamp_(max=self.max_log_scale)

    def forward(self, video: torch.Tensor, text: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if video.shape != text.shape or video.dim() != 2 or groups.shape != video.shape[:1]:
            raise ValueError(
                f"expected video (B, D), text (B, D), groups (B,); got {tuple(video.shape)}, "
                f"{tuple(text.shape)}, {tuple(groups.shape)}"
            )
        logits = self.scale * F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T
        positives = (groups[:, None] == groups[None, :]).float()  # (B, B), symmetric
        target = positives / positives.sum(dim=1, keepdim=True)
        loss_v2t = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss_t2v = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
        return (loss_v2t + loss_t2v) / 2


class LinearHeadLoss(nn.Module):
    """Cross-entropy for head 'linear': forward(logits (B, C), labels (B,) long) -> scalar."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
