"""predict, wired: a checkpoint scores video files (or folders of them); the results are printed and,
on request, written as JSON or CSV. Also the library's ``cavnet.predict``.

The outputs are checked before any file is decoded (writable, not one of the inputs); the CSV is written
row by row as the batches are done, so Ctrl-C keeps every row finished (the JSON too, whole)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from cavnet.extract.files.outputs import Output, RowWriter, check_outputs, csv_line, write_json
from cavnet.extract.files.terminal import shown
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
    """``cavnet predict``: one line per file on stdout (names escaped), the full table in ``json_out`` /
    ``csv_out``. On Ctrl-C the files done so far are kept in both and the interrupt goes on."""
    inputs = [*map(Path, paths), Path(checkpoint)] + ([Path(labels_file)] if labels_file else [])
    outputs = [Output(Path(p), what) for p, what in ((json_out, "--json"), (csv_out, "--csv")) if p is not None]
    labels = read_labels(labels_file) if labels_file is not None else None
    k = opts.top_k
    # a checkpoint that does not fit, a device this machine lacks: refused before an output folder is made
    predictor = Predictor(checkpoint, opts.device, labels, opts.batch_size, opts.decode_workers, opts.text_set)
    check_outputs(outputs, inputs, "predict")
    preds: list[Prediction] = []
    table = RowWriter(csv_out, "--csv") if csv_out is not None else None
    try:
        if table is not None:
            table.write(csv_line(header(k)), row=False)
        for p in predictor.stream(paths, k):
            preds.append(p)
            scores = "  ".join(f"{shown(name)} {score:.3f}" for name, score in zip(p.labels, p.scores))
            echo(f"{shown(p.path)}\t{p.status}\t{scores}")
            if table is not None:
                table.write(csv_line(csv_row(p, k)))
    finally:
        if table is not None:
            table.__exit__(None, None, None)
        if json_out is not None:
            write_json(json_out, [p.to_dict() for p in preds], "--json")
    return preds


def header(k: int) -> list[str]:
    """Columns id, path, status, label_1, score_1, ... label_k, score_k."""
    return ["id", "path", "status"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "score")]


def csv_row(p: Prediction, k: int) -> list[str]:
    """One file's row (label and score cells empty for a file that failed)."""
    pairs = [v for name, s in zip(p.labels, p.scores) for v in (name, f"{s:.4f}")]
    return [p.id, p.path, p.status] + pairs + [""] * (2 * k - len(pairs))
