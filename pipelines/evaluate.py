"""evaluate, wired: load a checkpoint once, score it on a split of a store's features or of raw videos
(decoded exactly as extraction decodes them), write per-class accuracy and the confusion matrix.

A checkpoint whose backbones were fine-tuned end to end no longer fits the features its store holds (the
old backbones computed them): it is scored on the videos only.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.datasets import Corpus
from cavnet.extract.device import decode_workers, resolve_device
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.files.outputs import RowWriter, atomic, csv_line, write_json
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.classes import class_subset, store_view
from cavnet.fuse.data import open_split
from cavnet.fuse.scoring.modality import modality_metrics, passes
from cavnet.fuse.scoring.views import protocol, score_views_modalities
from cavnet.fuse.metrics import Scores, confusion, prediction_rows, split_metrics
from cavnet.fuse.run.folder import hold_run_folder, now, run_record, write_run_record
from cavnet.pipelines.options import EvaluateOptions


def evaluate_command(checkpoint: Path, out_dir: Path | None, opts: EvaluateOptions, store: Path | None = None,
                     corpus: Corpus | None = None, progress: bool = False) -> dict[str, Any]:
    """``cavnet evaluate``: from a store's features, or (``corpus`` given) from raw videos. With
    ``out_dir``: metrics.json, predictions_{split}.csv, run.json, per-class accuracy and confusion matrix.
    ``opts.text_set``: the label-text set to score the classes with (None: the one the checkpoint trained
    with; from the store, or from the checkpoint's copies of its store's sets on raw videos)."""
    if store is not None and corpus is not None:
        raise CavnetError("give either --store or --dataset to evaluate on, not both")
    if store is None and corpus is None:
        raise CavnetError("give --store STORE.h5, or --dataset with --root / --manifest to evaluate on raw videos")
    inputs = [Path(checkpoint)] + ([Path(store)] if store is not None else []) + (
        corpus.input_files() if corpus is not None else [])
    # a device this machine lacks, a checkpoint that does not fit: refused before --out is made
    ckpt, dev = Checkpoint.load(checkpoint), resolve_device(opts.device)
    if out_dir is None:
        return _evaluate(checkpoint, ckpt, dev, None, opts, store, corpus, progress)
    with hold_run_folder(out_dir, what="--out", command="evaluate", inputs=inputs):  # before any scoring
        return _evaluate(checkpoint, ckpt, dev, out_dir, opts, store, corpus, progress)


def _evaluate(checkpoint: Path, ckpt: Checkpoint, dev: torch.device, out_dir: Path | None, opts: EvaluateOptions,
              store: Path | None, corpus: Corpus | None, progress: bool) -> dict[str, Any]:
    split, text_set = opts.split, opts.text_set
    record, modalities = run_record(), None
    if corpus is None and ckpt.backbones_trained:
        raise CavnetError(f"{checkpoint} fine-tuned its backbones, so a store's features do not fit it: "
                          "evaluate it on the videos (--dataset k400 --root PATH)")
    # the per-video table, row by row as videos are scored: Ctrl-C keeps the rows done
    with PredictionsTable(out_dir / f"predictions_{split}.csv" if out_dir else None, opts.top_k) as table_out:
        if corpus is not None:
            sc, names = _score_videos(ckpt, dev, corpus, opts, progress, table_out)
            used = f"{ckpt.extract_config().sampling.clips} clips x 1 crop"
            modalities = modality_metrics(passes(sc, sc.masked, ckpt.fusion.modalities), names)
        else:
            sc, names, table, record, used = _score_store(ckpt, dev, store, split, progress, text_set, opts.views,
                                                          opts.classes)
            modalities = record.pop("modalities")
            table_out.add(*table, names)
    result = {"split": split, "text_set": text_set or ckpt.trained_text_set, "protocol": used,
              "checkpoint": str(Path(checkpoint).resolve()), **split_metrics(sc, len(names)),
              "random_weights": random_weights_note(ckpt.extract_config()) if ckpt.store_config else None,
              # per-modality scores and confusion, from the store's features or from the videos
              "modalities": modalities}
    if out_dir is not None:
        write_reports(out_dir, split, sc.scores, sc.labels, names)
        result["reports"] = str(out_dir)
        write_json(out_dir / "metrics.json", result)
        where = corpus.record() if corpus is not None else {"dataset": None, "root": None}
        write_run_record(out_dir, {**record, "ended": now(), "checkpoint": result["checkpoint"],
                                   "dataset": where["dataset"], "root": where["root"]})
    return result


class PredictionsTable:
    """predictions_{split}.csv (id, label, status, top-k names and scores), each row on disk once it is
    added (``extract.files.outputs.RowWriter``); the file is made with its first rows, so a run refused
    before any video was scored leaves none. ``path`` None: nothing is written."""

    FIELDS = ["id", "label", "status", "top_k", "scores"]

    def __init__(self, path: Path | None, k: int) -> None:
        self.path, self.k, self.out = path, k, None

    def add(self, ids: list[str], labels: list[str], statuses: list[str], scores: np.ndarray,
            names: list[str]) -> None:
        """Rows of these videos; ``scores`` (n, C), a NaN row for a video without scores."""
        if self.path is None:
            return
        if self.out is None:
            self.out = RowWriter(self.path)
            self.out.write(csv_line(self.FIELDS), row=False)
        rows = prediction_rows(ids, scores, names, self.k, statuses, labels)
        self.out.write("".join(csv_line([r[f] for f in self.FIELDS]) for r in rows))

    def __enter__(self) -> "PredictionsTable":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.out is not None:
            self.out.__exit__(*exc)


def _score_store(ckpt: Checkpoint, dev: torch.device, store_path: Path, split: str, progress: bool,
                 text_set: str | None = None, views: str = "all", classes: str | None = None
                 ) -> tuple[Scores, list[str], tuple, dict[str, Any], str]:
    """Scores of the split's usable labelled rows (averaged over the store's views with ``views`` all), the
    predictions table (ids, labels, statuses, scores), the run record with the store's path and fingerprint
    and the per-modality metrics (``modalities``), and the protocol ("10 clips x 3 crops"). ``classes``: a
    class subset of the store (None: the checkpoint's, when it trained on one)."""
    from tqdm import tqdm

    with FeatureStore(store_path) as whole:
        subset = (class_subset(classes, list(whole.class_names)) if classes else
                  ckpt.class_names if ckpt.train.get("classes") else None)
        cols = subset_columns(ckpt, subset)
        store = store_view(whole, subset, "the checkpoint's --classes")
        record = run_record(store)
        ckpt.check_matches_store(dataclasses.asdict(store.dims), store.text_dim,
                                 list((whole if cols else store).class_names), str(store_path))
        index = store.rows().select(split, labelled=True)
        if len(index) == 0:
            raise CavnetError(f"{store_path}: split {split!r} has no usable labelled videos")
        # a tuned sentence encoder embedded the class prompts anew: the checkpoint holds those embeddings
        name = text_set or ckpt.trained_text_set
        class_emb = (ckpt.class_table(text_set) if ckpt.text_tuned
                     else torch.from_numpy((whole if cols else store).text_set(name).embedding)).to(dev)
        split_data = open_split(store, index, "label", device=dev, views="all" if views == "all" else "centre")
        bar = lambda b: tqdm(b, total=-(-len(index) // 512), desc=f"evaluate {split}",  # noqa: E731
                             unit="batch", disable=not progress, leave=False)
        # fused, audio masked, visual masked: the model's own missing-modality path (fuse.scoring.modality)
        passes = score_views_modalities(ckpt.fusion_model().to(dev), split_data, class_emb, ckpt.head, dev, 512, bar)
        if cols:  # a checkpoint of more classes scored on a subset: its columns of those classes
            passes = {k: v if v is None else Scores(v.scores[:, cols], v.labels, v.audio_present)
                      for k, v in passes.items()}
        sc = passes["fused"]
        names = list(store.class_names)
        rows = store.rows()
        table = ([str(v) for v in rows.ids[index]], [names[int(c)] for c in rows.labels[index]],
                 [str(v) for v in rows.statuses[index]], sc.scores)
        record["modalities"] = modality_metrics(passes, names)
        return sc, names, table, record, protocol(store, views=split_data.views > 1)


def subset_columns(ckpt: Checkpoint, subset: list[str] | None) -> list[int] | None:
    """The checkpoint's class columns of ``subset`` when it trained on more classes than the subset (None
    when it scores exactly the subset, or no subset); a class it never learnt is refused in one line."""
    if subset is None or subset == list(ckpt.class_names):
        return None
    missing = [n for n in subset if n not in ckpt.class_names]
    if missing:
        raise CavnetError(f"--classes: the checkpoint was not trained on class {missing[0]!r}")
    return [ckpt.class_names.index(n) for n in subset]


def _score_videos(ckpt: Checkpoint, dev: torch.device, corpus: Corpus, opts: EvaluateOptions, progress: bool,
                  table: PredictionsTable) -> tuple[Scores, list[str]]:
    """Scores of the split's labelled videos (one process); each video's row (decoded or not) goes to
    ``table`` as its batch is done."""
    from tqdm import tqdm

    from cavnet.finetune.build import build_avnet
    from cavnet.finetune.data import eval_loader
    from cavnet.finetune.distributed import DistEnv
    from cavnet.finetune.engine import score_videos

    split, config = opts.split, ckpt.extract_config()
    m = corpus.load((split,))
    ckpt.check_classes(m.classes, f"the {corpus.dataset} corpus")
    rows = [r for r in m.rows if r.label >= 0]
    if not rows:
        raise CavnetError(f"split {split!r} of this {corpus.dataset} corpus has no labelled videos")
    env = DistEnv()
    workers = decode_workers(opts.decode_workers, opts.device)
    loader = tqdm(eval_loader(rows, config, dev, env, opts.batch_size, workers), desc=f"evaluate {split}",
                  unit="batch", disable=not progress or not env.main, leave=False)
    names = list(m.classes)

    def done(positions: list[int], statuses: list[str], scores: np.ndarray) -> None:
        table.add([rows[i].video_id for i in positions], [rows[i].label_name for i in positions], statuses,
                  scores, names)

    sc = score_videos(build_avnet(ckpt, dev), loader, ckpt.class_table(opts.text_set).to(dev), ckpt.head, dev,
                      env, on_batch=done, modalities=True)
    if len(sc.labels) == 0:
        raise CavnetError(f"no video of split {split!r} could be decoded ({sc.statuses})")
    return sc, names


def write_reports(out_dir: Path, split: str, scores: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    from cavnet.pipelines.plots import plot_confusion

    out_dir.mkdir(parents=True, exist_ok=True)
    m = confusion(scores, labels, len(names))
    with atomic(out_dir / f"per_class_{split}.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["class", "name", "videos", "correct", "accuracy"])
        for c, name in enumerate(names):
            total = int(m[c].sum())
            w.writerow([c, name, total, int(m[c, c]), f"{100.0 * m[c, c] / total:.2f}" if total else ""])
    with atomic(out_dir / f"confusion_{split}.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["true\\pred"] + names)
        for c, name in enumerate(names):
            w.writerow([name] + m[c].tolist())
    plot_confusion(m, names, out_dir / f"confusion_{split}.png")


def echo_metrics(r: dict[str, Any], echo: Callable[[str], None]) -> None:
    """The lines ``cavnet evaluate`` prints."""
    split, a = r["split"], r["audio_present"]
    used = f" ({r['protocol']})" if r.get("protocol") else ""
    echo(f"{split}{used}: {r['count']} videos  top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  "
         f"mean-class {r['mean_class']:.2f}")
    echo(f"{split} with audio: {a['count']} videos  top-1 {a['top1']:.2f}  top-5 {a['top5']:.2f}  "
         f"mean-class {a['mean_class']:.2f}")
    for line in modality_lines(r.get("modalities"), split):
        echo(line)
    if r.get("random_weights"):
        echo(r["random_weights"])
    if "statuses" in r:
        echo(f"{split} decode statuses: " + ", ".join(f"{k} {v}" for k, v in r["statuses"].items()))


def modality_lines(m: dict[str, Any] | None, split: str) -> list[str]:
    """The per-modality lines of the summary: each scoring's top-1/top-5 (all videos, with audio) and the
    modality confusion both ways."""
    if not m:
        return []
    out = []
    for key, label in (("fused", "fused"), ("visual_only", "visual only (audio masked)"),
                       ("audio_only", "audio only (visual masked)")):
        s = m.get(key)
        if s:
            a = s["audio_present"]
            out.append(f"{split} {label}: top-1 {s['top1']:.2f}  top-5 {s['top5']:.2f}; with audio top-1 "
                       f"{a['top1']:.2f}  top-5 {a['top5']:.2f}")
    for key, label in (("visual_right_fused_wrong", "visual right, fused wrong"),
                       ("audio_right_fused_wrong", "audio right, fused wrong")):
        c = m.get(key)
        if c:
            out.append(f"{split} modality confusion, {label}: {c['percent']:.2f}% "
                       f"({c['fused_wrong']} of {c['single_right']})")
    return out
