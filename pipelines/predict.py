"""predict, wired: a checkpoint scores video files (or folders of them); the results are printed and,
on request, written as JSON or CSV. Also the library's ``cavnet.predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Sequence

from cavnet.finetune.predict import Prediction, Predictor, read_labels
from cavnet.pipelines.options import PredictOptions


def predict(paths: Sequence[str | Path], checkpoint: str | Path, k: int = 5, labels: Sequence[str] | None = None,
            device: str = "auto", batch_size: int = 8, decode_workers: int | None = None,
            text_set: str | None = None) -> list[Prediction]:
    """Top-``k`` labels of each video file (folders expanded) by ``checkpoint``; ``labels``: other label
    texts, scored zero-shot; ``text_set``: another label-text set of the checkpoint's. A file that does not
    decode is returned with its status and no labels."""
    return Predictor(checkpoint, device, labels, batch_size, decode_workers, text_set).predict(paths, k)


def predict_command(paths: Sequence[Path], checkpoint: Path, opts: PredictOptions, labels_file: Path | None,
                    json_out: Path | None, csv_out: Path | None, echo: Callable[[str], None]) -> list[Prediction]:
    """``cavnet predict``: one line per file on stdout, the full table in ``json_out`` / ``csv_out``."""
    labels = read_labels(labels_file) if labels_file is not None else None
    k = opts.top_k
    preds = predict(paths, checkpoint, k, labels, opts.device, opts.batch_size, opts.decode_workers, opts.text_set)
    for p in preds:
        shown = "  ".join(f"{name} {score:.3f}" for name, score in zip(p.labels, p.scores))
        echo(f"{p.path}\t{p.status}\t{shown}")
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps([p.to_dict() for p in preds], indent=2))
    if csv_out is not None:
        write_csv(csv_out, preds, k)
    return preds


def write_csv(path: Path, preds: list[Prediction], k: int) -> None:
    """Columns id, path, status, label_1, score_1, ... label_k, score_k (empty for a file that failed)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "status"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "score")])
        for p in preds:
            pairs = [v for name, s in zip(p.labels, p.scores) for v in (name, f"{s:.4f}")]
            w.writerow([p.id, p.path, p.status] + pairs + [""] * (2 * k - len(pairs)))
