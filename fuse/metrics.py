"""Scores of a split and the metrics every command reports from them (evaluate, fuse-train, fine-tune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Scores:
    """Class scores (N, C), true labels (N,) and whether each video had audio (N,) of the videos scored;
    ``positions`` (N,): their rows in the split (raw-video scoring); ``statuses``: the decode status count
    of every video tried, decodable or not, and ``status_of`` the status of each position (raw-video scoring);
    ``masked``: the same videos' scores (N, C) with one modality masked, 'visual_only' (audio masked) and
    'audio_only' (visual masked), when they were asked for (raw-video scoring)."""

    scores: np.ndarray
    labels: np.ndarray
    audio_present: np.ndarray
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    statuses: dict[str, int] = field(default_factory=dict)
    status_of: dict[int, str] = field(default_factory=dict)
    masked: dict[str, np.ndarray] = field(default_factory=dict)


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """top-1, top-5 and mean class accuracy (%) of ``scores`` (N, C) against ``labels`` (N,)."""
    if len(labels) == 0:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class": float("nan"), "count": 0}
    k = min(5, scores.shape[1])
    topk = np.argsort(-scores, axis=1)[:, :k]
    hit1 = topk[:, 0] == labels
    hit5 = (topk == labels[:, None]).any(axis=1)
    per_class = [hit1[labels == c].mean() for c in range(num_classes) if (labels == c).any()]
    return {"top1": float(100.0 * hit1.mean()), "top5": float(100.0 * hit5.mean()),
            "mean_class": 100.0 * float(np.mean(per_class)), "count": int(len(labels))}


def split_metrics(sc: Scores, num_classes: int) -> dict[str, Any]:
    """Accuracy of all videos scored and of those with audio (``audio_present``), plus the decode status
    counts when the videos were decoded for the purpose."""
    audio = sc.audio_present
    out: dict[str, Any] = {**accuracy_metrics(sc.scores, sc.labels, num_classes),
                           "audio_present": accuracy_metrics(sc.scores[audio], sc.labels[audio], num_classes)}
    if sc.statuses:
        out["statuses"] = dict(sorted(sc.statuses.items()))
    return out


def confusion(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, scores.argmax(axis=1)), 1)
    return m


def top_k(row: np.ndarray, names: list[str], k: int) -> tuple[list[str], list[float]]:
    """The ``k`` best of one video's class scores ``row`` (C,): (names, scores), best first."""
    order = np.argsort(-row, kind="stable")[:max(1, k)]
    return [names[int(i)] for i in order], [float(row[int(i)]) for i in order]


def prediction_rows(ids: list[str], scores: np.ndarray, names: list[str], k: int,
                    statuses: list[str], labels: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a predictions table: id, true label ('' unknown), status, top-k names and scores
    ('|'-joined, best first; empty for a video without scores, NaN rows)."""
    out = []
    for i, vid in enumerate(ids):
        row = scores[i]
        names_k, scores_k = ([], []) if np.isnan(row).any() else top_k(row, names, k)
        out.append({"id": vid, "label": labels[i] if labels else "", "status": statuses[i],
                    "top_k": "|".join(names_k), "scores": "|".join(f"{s:.4f}" for s in scores_k)})
    return out
