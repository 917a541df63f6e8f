"""What each modality does, from one checkpoint: the same model scored fused, with its audio masked and with
its visual masked, and VGGSounder's modality confusion (docs/model.md, "Per-modality metrics").

Masking goes through the model's own missing-modality path: every token of the masked stream is marked
padding (its mask all False), exactly what a video without audio gets from the store; no feature is zeroed
or replaced. No file I/O here.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from cavnet.fuse.data import Batch
from cavnet.fuse.engine import score
from cavnet.fuse.metrics import Scores, accuracy_metrics

DROPS = {"visual_only": "audio", "audio_only": "visual"}  # report key -> the modality masked


def masked(batches: Iterable[Batch], drop: str) -> Iterator[Batch]:
    """``batches`` with every token of ``drop`` ('audio' or 'visual') marked missing (mask all False)."""
    for b in batches:
        if drop == "audio":
            yield Batch(b.visual, b.vmask, b.audio, torch.zeros_like(b.amask), b.text, b.labels, b.groups)
        else:
            yield Batch(b.visual, torch.zeros_like(b.vmask), b.audio, b.amask, b.text, b.labels, b.groups)


def score_modalities(model: nn.Module, batches_fn, class_emb: torch.Tensor, head: str,
                     device: torch.device) -> dict[str, Scores | None]:
    """Scores of the same videos fused and with one modality masked: {'fused', 'visual_only', 'audio_only'}.

    ``batches_fn()`` yields the split's batches afresh (once per pass, same order). A single-modality model
    ('v' or 'a') has no second stream to mask: its fused scores are its own modality's, the other is None."""
    fused = score(model, batches_fn(), class_emb, head, device)
    uses = getattr(getattr(model, "config", None), "modalities", "av")
    two = {key: score(model, masked(batches_fn(), drop), class_emb, head, device).scores
           for key, drop in DROPS.items()} if uses == "av" else {}
    return passes(fused, two, uses)


def passes(fused: Scores, masked_scores: dict[str, np.ndarray], uses: str) -> dict[str, Scores | None]:
    """{'fused', 'visual_only', 'audio_only'} from the fused scores and, for a model of both streams
    (``uses`` 'av'), the (N, C) scores of the same videos with one stream masked (keys of ``DROPS``). A
    single-modality model's fused scores are its own modality's; the other is None."""
    out: dict[str, Scores | None] = {"fused": fused}
    for key in DROPS:
        if uses == "av":
            out[key] = Scores(masked_scores[key], fused.labels, fused.audio_present)
        else:
            out[key] = fused if uses == ("v" if key == "visual_only" else "a") else None
    return out


def modality_confusion(single: np.ndarray, fused: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """VGGSounder's modality confusion of one modality: among the videos that modality alone gets right
    (top-1), the percentage the fused model gets wrong.  single (N, C), fused (N, C), labels (N,)."""
    right = single.argmax(axis=1) == labels
    lost = right & (fused.argmax(axis=1) != labels)
    n = int(right.sum())
    return {"single_right": n, "fused_wrong": int(lost.sum()),
            "percent": float(100.0 * lost.sum() / n) if n else float("nan")}


def per_class(scores: dict[str, Scores | None], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per-class top-1 (%) of each scoring: name -> {'videos', 'fused', 'visual_only', 'audio_only'}."""
    labels = scores["fused"].labels
    out = {}
    for c, name in enumerate(names):
        rows = labels == c
        entry: dict[str, Any] = {"videos": int(rows.sum())}
        for key, sc in scores.items():
            hit = sc is not None and rows.any()
            entry[key] = float(100.0 * (sc.scores[rows].argmax(axis=1) == c).mean()) if hit else None
        out[name] = entry
    return out


def modality_metrics(scores: dict[str, Scores | None], names: list[str]) -> dict[str, Any]:
    """The per-modality block of metrics.json: top-1/top-5 of each scoring over all videos and over those
    with audio, and the confusion both ways ('visual_right_fused_wrong', 'audio_right_fused_wrong')."""
    fused, c = scores["fused"], len(names)
    audio = fused.audio_present
    out: dict[str, Any] = {}
    for key, sc in scores.items():
        if sc is None:
            out[key] = None
            continue
        out[key] = {**_top(accuracy_metrics(sc.scores, sc.labels, c)),
                    "audio_present": _top(accuracy_metrics(sc.scores[audio], sc.labels[audio], c))}
    for key, name in (("visual_only", "visual_right_fused_wrong"), ("audio_only", "audio_right_fused_wrong")):
        sc = scores[key]
        out[name] = None if sc is None or sc is fused else modality_confusion(sc.scores, fused.scores, fused.labels)
    out["per_class"] = per_class(scores, names)
    return out


def _top(m: dict[str, float]) -> dict[str, float]:
    return {k: m[k] for k in ("top1", "top5", "count")}
