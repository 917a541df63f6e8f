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
from cavnet.extract.device import resolve_device
from cavnet.extract.store.fsfault import check_writable, describe
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.data import open_split
from cavnet.fuse.engine import score
from cavnet.fuse.metrics import Scores, confusion, split_metrics


def evaluate_command(checkpoint: Path, split: str, out_dir: Path | None, device: str, store: Path | None = None,
                     dataset: str | None = None, root: Path | None = None, manifest: Path | None = None,
                     batch_size: int = 8, decode_workers: int = 2) -> dict[str, Any]:
    """``cavnet evaluate``: from a store's features, or (``dataset`` given) from raw videos."""
    if store is not None and dataset is not None:
        raise CavnetError("give either --store or --dataset to evaluate on, not both")
    if store is None and dataset is None:
        raise CavnetError("give --store STORE.h5, or --dataset with --root / --manifest to evaluate on raw videos")
    if out_dir is not None:
        check_writable(out_dir / "per_class.csv", (f"per_class_{split}.csv", f"confusion_{split}.csv"), "--out")  # before any scoring
    ckpt = Checkpoint.load(checkpoint)
    dev = resolve_device(device)
    if dataset is not None:
        sc, names = _score_videos(ckpt, dev, dataset, root, manifest, split, batch_size, decode_workers)
    elif ckpt.backbones_trained:
        raise CavnetError(f"{checkpoint} fine-tuned its backbones, so a store's features do not fit it: "
                          "evaluate it on the videos (--dataset k400 --root PATH)")
    else:
        sc, names = _score_store(ckpt, dev, store, split)
    result = {"split": split, "checkpoint": str(checkpoint), **split_metrics(sc, len(names))}
    if out_dir is not None:
        try:
            write_reports(out_dir, split, sc.scores, sc.labels, names)
        except OSError as exc:
            raise CavnetError(describe(exc, Path(exc.filename or out_dir), f"writing --out {out_dir} failed")) from None
        result["reports"] = str(out_dir)
    return result


def _score_store(ckpt: Checkpoint, dev: torch.device, store_path: Path, split: str) -> tuple[Scores, list[str]]:
    with FeatureStore(store_path) as store:
        ckpt.check_matches_store(dataclasses.asdict(store.dims), store.text_dim, list(store.class_names),
                                 str(store_path))
        index = store.rows().select(split, labelled=True)
        if len(index) == 0:
            raise CavnetError(f"{store_path}: split {split!r} has no usable labelled videos")
        class_emb = torch.from_numpy(store.class_embedding).to(dev)
        sc = score(ckpt.fusion_model().to(dev), open_split(store, index, "label").batches(512), class_emb,
                   ckpt.head, dev)
        return sc, list(store.class_names)


def _score_videos(ckpt: Checkpoint, dev: torch.device, dataset: str, root: Path | None, manifest: Path | None,
                  split: str, batch_size: int, decode_workers: int) -> tuple[Scores, list[str]]:
    from cavnet.finetune.build import build_avnet
    from cavnet.finetune.data import eval_loader
    from cavnet.finetune.distributed import DistEnv
    from cavnet.finetune.engine import score_videos
    from cavnet.pipelines.manifests import load_manifest

    config = ckpt.extract_config()
    m = load_manifest(dataset, root, manifest, (split,))
    ckpt.check_classes(m.classes, f"the {dataset} corpus")
    rows = [r for r in m.rows if r.label >= 0]
    if not rows:
        raise CavnetError(f"split {split!r} of this {dataset} corpus has no labelled videos")
    env = DistEnv()
    sc = score_videos(build_avnet(ckpt, dev), eval_loader(rows, config, dev, env, batch_size, decode_workers),
                      ckpt.class_embedding.float().to(dev), ckpt.head, dev, env)
    if len(sc.labels) == 0:
        raise CavnetError(f"no video of split {split!r} could be decoded ({sc.statuses})")
    return sc, list(m.classes)


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


def echo_metrics(r: dict[str, Any], echo: Callable[[str], None]) -> None:
    """The lines ``cavnet evaluate`` prints."""
    split, a = r["split"], r["audio_present"]
    echo(f"{split}: {r['count']} videos  top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  "
         f"mean-class {r['mean_class']:.2f}")
    echo(f"{split} with audio: {a['count']} videos  top-1 {a['top1']:.2f}  top-5 {a['top5']:.2f}  "
         f"mean-class {a['mean_class']:.2f}")
    if "statuses" in r:
        echo(f"{split} decode statuses: " + ", ".join(f"{k} {v}" for k, v in r["statuses"].items()))
