"""The training and evaluation loops of stage two (no file I/O: the pipeline saves what they return)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cavnet.errors import CavnetError
from cavnet.fuse.data import Batch
from cavnet.fuse.metrics import Scores
from cavnet.fuse.model import SentenceEncoder
from cavnet.fuse.run.optim import optimizer_step


@dataclass
class TunedText:
    """The sentence encoder fine-tuned as the text side of a run (``text_encoder_lr`` > 0).

    prompts (C,): the class prompts (label targets and scoring); strings: the text of each positive group
    of the video-text targets (group id -> the stored string its rows embedded)."""

    encoder: SentenceEncoder
    prompts: list[str]
    strings: dict[int, str]

    def embed_keys(self, keys: torch.Tensor, texts: dict[int, str] | list[str]) -> torch.Tensor:
        """(B,) keys (class ids or group ids) -> (B, Dt): one encoder forward over the batch's unique texts,
        with gradients, each row its key's embedding."""
        unique, inverse = torch.unique(keys, return_inverse=True)
        emb = self.encoder([texts[int(k)] for k in unique.tolist()])
        return emb[inverse.to(emb.device)]

    def batch_targets(self, batch: Batch, targets: str) -> torch.Tensor:
        """The batch's text targets (B, Dt): its labels' class prompts or its videos' own stored strings."""
        if targets == "label":
            return self.embed_keys(batch.labels, self.prompts)
        return self.embed_keys(batch.groups, self.strings)

    def class_embedding(self) -> torch.Tensor:
        """(C, Dt) the class prompts through the encoder as it is now (no gradient, dropout off)."""
        return self.encoder.embed(self.prompts)

    def state(self) -> dict[str, torch.Tensor]:
        """The tuned encoder's weights as a checkpoint keeps them (``text_encoder``, on the CPU)."""
        return {k: v.detach().cpu().clone() for k, v in self.encoder.model.state_dict().items()}

    def resume(self, state: dict[str, torch.Tensor] | None, where: object) -> None:
        """Load the tuned weights of the checkpoint at ``where``; one line when it holds none."""
        if state is None:
            raise CavnetError(f"{where}: holds no tuned text encoder to resume")
        self.encoder.model.load_state_dict(state)


def batch_loss(model: nn.Module, loss_fn: nn.Module | None, batch: Batch, class_emb: torch.Tensor,
               targets: str, text: TunedText | None = None) -> torch.Tensor:
    """The training loss of one batch: contrastive against texts (head 'text') or cross-entropy (head 'linear').
    ``text``: the tuned sentence encoder embeds the batch's texts (else the stored embeddings are used)."""
    out = model(batch.visual, batch.vmask, batch.audio, batch.amask)
    if loss_fn is None:
        return F.cross_entropy(out, batch.labels)
    if text is not None:
        t = text.batch_targets(batch, targets)
    else:
        t = class_emb[batch.labels] if targets == "label" else batch.text
    return loss_fn(out, model.encode_text(t), batch.groups)


def train_one_epoch(model: nn.Module, loss_fn: nn.Module | None, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, batches: Iterable[Batch],
                    class_emb: torch.Tensor, targets: str, device: torch.device, bar=None,
                    text: TunedText | None = None) -> dict[str, float]:
    """One pass over ``batches``; returns the mean loss, videos seen and seconds. A batch of fewer than two
    videos is skipped (see ``fuse.run.optim.steps_per_epoch``). ``text``: a tuned sentence encoder (see
    ``TunedText``)."""
    model.train()
    if text is not None:
        text.encoder.eval()  # trained without dropout: deterministic targets (see SentenceEncoder)
    t0, total, seen = time.perf_counter(), 0.0, 0
    for batch in batches:
        if len(batch) < 2:
            continue
        batch = batch.to(device)
        loss = batch_loss(model, loss_fn, batch, class_emb, targets, text)
        optimizer_step(loss, optimizer, scheduler, loss_fn)
        total += float(loss.detach()) * len(batch)
        seen += len(batch)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(loss=f"{total / seen:.3f}")
    return {"loss": total / max(1, seen), "videos": seen, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def score(model: nn.Module, batches: Iterable[Batch], class_emb: torch.Tensor, head: str,
          device: torch.device) -> Scores:
    """Scores of every video: cosine similarity to the class embeddings (paper's test stage) or logits."""
    model.eval()
    out, labels, audio = [], [], []
    for batch in batches:
        batch = batch.to(device)
        emb = model(batch.visual, batch.vmask, batch.audio, batch.amask)
        out.append((emb if head == "linear" else model.score_classes(emb, class_emb)).float().cpu())
        labels.append(batch.labels.cpu())
        audio.append(batch.amask.any(dim=1).cpu())
    if not out:
        return Scores(np.zeros((0, class_emb.shape[0]), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
    return Scores(torch.cat(out).numpy(), torch.cat(labels).numpy(), torch.cat(audio).numpy())
