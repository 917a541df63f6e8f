"""The language-guided contrastive losses of stage two (head 'text'; head 'linear' is plain cross-entropy).

- ``ContrastiveLoss`` (``FusionConfig.loss='clip'``, the default): CLIP's symmetric InfoNCE, N x K logits
  of the videos against the batch's unique texts.
- ``PaperLoss`` (``loss='paper'``, the paper-literal preset): eq. 9 as written, a 2N-way denominator over
  all 2N embeddings of the batch (its N videos and N texts) without the anchor, both directions.

In both, identical target texts (one ``groups`` id: the same class prompt, or the same caption) are one
text, so the videos that share it are its positives and never each other's negatives; and the temperature
is learned as ``logit_scale = log(1 / tau)``, initialised to log(1 / 0.07) and clamped at log(100).
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


class PaperLoss(ContrastiveLoss):
    """Eq. 9 as written: each positive pair (z_i, t_i) scored against all 2N embeddings of the batch but
    the anchor, in both directions, with the same learnable temperature as ``ContrastiveLoss``.

    forward(video (B, D), text (B, D), groups (B,) long) -> scalar. With E = [z_1..z_B, u_1..u_K] (the
    videos and the batch's K unique texts; K = B when every text differs, so E is eq. 9's 2N embeddings):
        L(z_i) = -log [ e^{s(z_i, u_i)/tau} / (e^{s(z_i, u_i)/tau} + sum_{e in E of another group} e^{s(z_i, e)/tau}) ]
        L(u_i) = the same with the text u_i of pair i as the anchor and z_i as its positive
        loss   = mean over the 2B terms
    With distinct groups the denominator is exactly eq. 9's sum over k != i of the 2N embeddings: the
    positive and the other 2(N - 1) as negatives. With shared groups (label targets: the videos of a class
    carry the same prompt) an anchor's denominator holds its positive and the embeddings of other groups
    only: the other videos of its class, and its class prompt's copies, are never its negatives (each is
    the positive of its own term), as the design says ("videos of the same class are positives"). A
    negative text shared by several videos counts once (unique texts, as in ``ContrastiveLoss``).
    """

    def forward(self, video: torch.Tensor, text: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        if video.shape != text.shape or video.dim() != 2 or groups.shape != video.shape[:1]:
            raise ValueError(
                f"expected video (B, D), text (B, D), groups (B,); got {tuple(video.shape)}, "
                f"{tuple(text.shape)}, {tuple(groups.shape)}"
            )
        own, first = unique_texts(groups)  # (B,), (K,)
        b, k = video.shape[0], len(first)
        z = F.normalize(video.float(), dim=-1)
        u = F.normalize(text[first].float(), dim=-1)
        emb = torch.cat([z, u])  # (B + K, D): the videos, then the unique texts
        group_of = torch.cat([own, torch.arange(k, device=own.device)])  # (B + K,)
        negative = group_of[None, :] != own[:, None]  # (B, B + K): the other groups' embeddings
        sim_v = self.scale * z @ emb.T  # anchors z_i
        sim_t = self.scale * u[own] @ emb.T  # anchors u_i, the text of pair i
        positive = sim_v[torch.arange(b), b + own]  # s(z_i, u_i) / tau, the same from both sides
        fill = torch.finfo(sim_v.dtype).min

        def term(sim: torch.Tensor) -> torch.Tensor:
            denominator = torch.cat([positive[:, None], sim.masked_fill(~negative, fill)], dim=1)
            return torch.logsumexp(denominator, dim=1) - positive

        return (term(sim_v).sum() + term(sim_t).sum()) / (2 * b)


LOSSES = {"clip": ContrastiveLoss, "paper": PaperLoss}


def make_loss(loss: str) -> ContrastiveLoss:
    """The contrastive loss named by ``FusionConfig.loss`` ('clip' or 'paper'), temperature at 0.07."""
    return LOSSES[loss]()
