"""Scores averaged over the spatial views a store holds (``extract --views``/``--flip``), and the protocol
string every report states ("10 clips x 3 crops").

The averaged score is the model's own class score (the cosine similarity to the class texts, head ``text``,
or the logit, head ``linear``), not a softmax: the mean of each view's score, taken in float64, so views that
are equal give back exactly the one view's scores whatever their number. Clips are averaged inside the
model already (its pooling over the clip tokens); the views of a video are scored one pass per view.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.data import Batch, InMemorySplit, StreamedSplit
from cavnet.fuse.engine import score
from cavnet.fuse.metrics import Scores


def average_views(per_view: list[Scores]) -> Scores:
    """The per-view ``Scores`` of the same videos in the same order -> their mean scores ``(N, C)``."""
    mean = np.mean(np.stack([s.scores.astype(np.float64) for s in per_view]), axis=0)
    first = per_view[0]
    return Scores(mean.astype(np.float32), first.labels, first.audio_present)


def score_views(model: nn.Module, split: InMemorySplit | StreamedSplit, class_emb: torch.Tensor, head: str,
                device: torch.device, batch_size: int = 512,
                wrap: Callable[[Iterable[Batch]], Iterable[Batch]] = lambda b: b) -> Scores:
    """Scores of every video of ``split``, averaged over the views it holds (one view: as ``score``)."""
    if split.views == 1:
        return score(model, wrap(split.batches(batch_size)), class_emb, head, device)
    return average_views([score(model, wrap(split.batches(batch_size, view=v)), class_emb, head, device)
                          for v in range(split.views)])


def protocol(store: FeatureStore, views: bool = True) -> str:
    """"n clips x K crops" (and "x 2 flips") of the views used: all the store's (``views``), else the centre."""
    clips = store.dims.clips
    if not views or store.views == 1:
        return f"{clips} clips x 1 crop"
    spec = store.config.views
    return f"{clips} clips x {spec.crops} crops" + (" x 2 flips" if spec.flip else "")


def score_views_modalities(model: nn.Module, split: InMemorySplit | StreamedSplit, class_emb: torch.Tensor,
                           head: str, device: torch.device, batch_size: int = 512,
                           wrap: Callable[[Iterable[Batch]], Iterable[Batch]] = lambda b: b
                           ) -> dict[str, Scores | None]:
    """``fuse.modality.score_modalities`` (fused, visual-only, audio-only) of every video of ``split``, each
    averaged over the views it holds as :func:`score_views` averages."""
    from cavnet.fuse.scoring.modality import score_modalities

    def passes(view: int | None) -> dict[str, Scores | None]:
        kw = {} if view is None else {"view": view}
        return score_modalities(model, lambda: wrap(split.batches(batch_size, **kw)), class_emb, head, device)

    if split.views == 1:
        return passes(None)
    per_view = [passes(v) for v in range(split.views)]
    return {k: None if per_view[0][k] is None else average_views([p[k] for p in per_view]) for k in per_view[0]}
