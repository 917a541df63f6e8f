"""The optimisation every training run shares: AdamW over named parameter groups (weight decay on matrices
and kernels only), linear warm-up then cosine decay, one optimiser step, and the steps an epoch takes.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from cavnet.fuse.train_config import OptimConfig

Parts = Iterable[tuple[str, Iterable[nn.Parameter], float]]


class NonFiniteLoss(Exception):
    """A training loss that is NaN or infinite at optimiser step ``step`` (counted from 1); nothing stepped."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"loss {value} at step {step}")
        self.step, self.value = step, value


def param_groups(parts: Parts, weight_decay: float) -> list[dict]:
    """AdamW groups for ``(name, parameters, lr)`` parts, each split into ``name.decay`` (every parameter of
    two or more dimensions: matrices, kernels, the learned position tables) and ``name.no_decay`` (vectors
    and scalars: biases, norms, the clock's slopes, the temperature); frozen parameters and empty groups
    are left out."""
    groups = []
    for name, params, lr in parts:
        trainable = [p for p in params if p.requires_grad]
        for suffix, ps, wd in (("decay", [p for p in trainable if p.dim() >= 2], weight_decay),
                               ("no_decay", [p for p in trainable if p.dim() < 2], 0.0)):
            if ps:
                groups.append({"name": f"{name}.{suffix}", "params": ps, "lr": lr, "weight_decay": wd})
    return groups


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(parts: Parts, cfg: OptimConfig, steps_per_epoch: int
                   ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``parts`` (``(name, parameters, lr)``, see :func:`param_groups`) with ``cfg``'s weight
    decay, and its warm-up + cosine schedule over ``cfg.epochs`` epochs of ``steps_per_epoch`` steps."""
    optimizer = torch.optim.AdamW(param_groups(parts, cfg.weight_decay), lr=cfg.lr)
    total = cfg.epochs * steps_per_epoch
    return optimizer, warmup_cosine(optimizer, cfg.warmup_steps(steps_per_epoch), total)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, loss_fn: nn.Module | None) -> None:
    """Back-propagate ``loss``, step the optimiser and the schedule, clamp the learned temperature. A NaN or
    infinite loss steps nothing: ``NonFiniteLoss`` (the run harness names the epoch and the step)."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise NonFiniteLoss(int(scheduler.last_epoch) + 1, float(loss.detach().float().sum()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    if loss_fn is not None and hasattr(loss_fn, "clamp_"):
        loss_fn.clamp_()


def steps_per_epoch(share: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps of one epoch when each of ``world`` processes takes ``share`` videos in batches of
    ``batch_size``: a trailing batch of one video over all processes is dropped (a single row has no
    negatives: zero contrastive loss), so it neither steps nor advances the schedule."""
    full, rest = divmod(share, batch_size)
    return full + int(rest * world >= 2)
