"""evaluate, wired: score a checkpoint on a split of a store; per-class accuracy and confusion matrix."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.store_reader import FeatureStore
from cavnet.fuse.data import open_split
from cavnet.fuse.engine import accuracy_metrics, score
from cavnet.pipelines.checkpoint import check_matches_store, load_checkpoint, model_from_checkpoint
from cavnet.pipelines.extract_batch import resolve_device


def confusion(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, scores.argmax(axis=1)), 1)
    return m


def run_evaluate(store_path: Path, checkpoint: Path, split: str = "val", out_dir: Path | None = None,
                 device: str = "auto") -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``split``: all videos, and the subset that has audio."""
    state = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    with FeatureStore(store_path) as store:
        check_matches_store(state, dataclasses.asdict(store.dims), store.text_dim, len(store.class_names),
                            str(store_path))
        index = store.rows().select(split, labelled=True)
        if len(index) == 0:
            raise CavnetError(f"{store_path}: split {split!r} has no usable labelled videos")
        model = model_from_checkpoint(state).to(dev)
        class_emb = torch.from_numpy(store.class_embedding).to(dev)
        head = state["fusion_config"]["head"]
        sc = score(model, open_split(store, index, "label").batches(512), class_emb, head, dev)
        names, store_config = list(store.class_names), store.config
    n = len(names)
    result = {"split": split, "checkpoint": str(checkpoint), **accuracy_metrics(sc.scores, sc.labels, n),
              "audio_present": accuracy_metrics(sc.scores[sc.audio_present], sc.labels[sc.audio_present], n),
              "random_weights": random_weights_note(store_config)}
    if out_dir is not None:
        write_reports(out_dir, split, sc.scores, sc.labels, names)
        result["reports"] = str(out_dir)
    return result


def write_reports(out_dir: Path, split: str, scores: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    from cavnet.pipelines.plots import plot_confusion

    out_dir.mkdir(parents=True, exist_ok=True)
    m = confusion(scores, labels, len(names))
    with open(out_dir / f"per_class_{split}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["class", "name", "videos", "correct", "accuracy"])
        for c, name in enumerate(names):
            total = int(m[c].sum())
            w.writerow([c, name, total, int(m[c, c]), f"{100.0 * m[c, c] / total:.2f}" if total else ""])
    with open(out_dir / f"confusion_{split}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true\\pred"] + names)
        for c, name in enumerate(names):
            w.writerow([name] + m[c].tolist())
    plot_confusion(m, names, out_dir / f"confusion_{split}.png")
