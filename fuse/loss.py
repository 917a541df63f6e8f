"""Losses of stage two: the language-guided contrastive loss (paper eq. 9, the CLIP way) and plain
cross-entropy for the linear-head baseline.

ContrastiveLoss is CLIP's symmetric InfoNCE with two changes the design asks for: identical target texts
(one ``groups`` id: the same class prompt, or the same caption) are one text, scored once, so the videos
that share it are all its positives and never each other's negatives; and the temperature is learned as
``logit_scale = log(1 / tau)``, initialised to log(1 / 0.07) and clamped at log(100).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ContrastiveLoss(nn.Module):
    """Symmetric video<->text contrastive loss over the batch's unique texts, with a learnable temperature.

    forward(video (B, D), text (B, D), groups (B,) long) -> scalar. Rows with one ``groups`` id carry the
    same text; the batch's K unique texts are scored once each (the first row of each group stands for it):
        logits = exp(logit_scale) * norm(video) @ norm(unique_text).T          (B, K)
        video->text: cross-entropy of row i to its own unique text              (mean over the B videos)
        text->video: cross-entropy of unique text k, target uniform over the videos that share it
                     (mean over the K texts)
        loss = (video->text + text->video) / 2
    With label targets that is "videos against the class prompts present in the batch". With all groups
    distinct (K = B) it is exactly CLIP's loss. Pass groups = arange(B) (or video ids) for distinct texts.
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
        own, first = unique_texts(groups)  # (B,) index into the K unique texts, (K,) their first rows
        logits = self.scale * F.normalize(video.float(), dim=-1) @ F.normalize(text[first].float(), dim=-1).T
        loss_v2t = F.cross_entropy(logits, own)
        members = (own[None, :] == torch.arange(len(first), device=own.device)[:, None]).float()  # (K, B)
        target = members / members.sum(dim=1, keepdim=True)
        loss_t2v = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
        return (loss_v2t + loss_t2v) / 2


def unique_texts(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """groups (B,) -> (own (B,) long: each row's unique-text index in [0, K), first (K,) long: the first row
    of each unique text), unique texts in order of first appearance."""
    _, inverse = torch.unique(groups, return_inverse=True)
    b = groups.shape[0]
    rows = torch.arange(b, device=groups.device)
    first_sorted = torch.full((int(inverse.max()) + 1 if b else 0,), b, device=groups.device, dtype=torch.long)
    first_sorted = first_sorted.scatter_reduce(0, inverse, rows, reduce="amin")
    order = first_sorted.argsort()  # unique ids sorted by first appearance
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=groups.device)
    return rank[inverse], first_sorted[order]


class LinearHeadLoss(nn.Module):
    """Cross-entropy for head 'linear': forward(logits (B, C), labels (B,) long) -> scalar."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
