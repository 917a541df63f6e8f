"""fuse-train, wired: device, store and optional init checkpoint -> ``fuse.run.fusion.FusionRun`` -> curves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.device import resolve_device
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.run.folder import claim_run_folder, hold_run_folder
from cavnet.fuse.classes import with_classes
from cavnet.fuse.train_config import TrainConfig
from cavnet.fuse.run.fusion import FusionRun, TrainResult, fusion_config_for


def run_fuse_train(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any],
                   init: Path | None = None, resume: bool = False, echo: Callable[[str], None] = print,
                   progress: bool = True, pretrain_store: Path | None = None,
                   pretrain_epochs: int = 0, allow_overlap: bool = False) -> TrainResult:
    """Train CAV-Net on ``store_path``; writes config.json, metrics.jsonl, last.pt, best.pt, curves.png.

    ``pretrain_store``: first a contrastive video-text pretraining on that store (captions or titles, no
    labels needed; every usable row) for ``pretrain_epochs`` (0: as many as ``tcfg.epochs``) in
    ``out/pretrain``, then training on ``store_path`` from its weights and temperature. It is refused when
    it is the target store or holds videos of the target's val/test splits (``check_pretrain_store``),
    unless ``allow_overlap``."""
    device = resolve_device(tcfg.device)
    inputs = (store_path, init, pretrain_store)
    if pretrain_store is not None:
        if init is not None:
            raise CavnetError("--init and --pretrain-store both give the starting weights; pass one")
        if not allow_overlap:
            check_pretrain_store(store_path, pretrain_store, tcfg.val_split)
        claim_run_folder(out, "fuse-train", inputs=inputs)  # before its pretrain/ sub-folder is written
        init = pretrain(pretrain_store, out / "pretrain", replace(tcfg, epochs=pretrain_epochs or tcfg.epochs,
                                                                  targets="video-text"),
                        model_overrides, resume, echo, progress)
    init_ckpt = Checkpoint.load(init) if init is not None else None
    with FeatureStore(store_path) as whole:
        store = with_classes(whole, tcfg.classes)  # a class subset: a view, nothing re-extracted
        fcfg = fusion_config_for(store, model_overrides)  # a bad or too large model: refused before OUT is made
        with hold_run_folder(out, command="fuse-train", inputs=inputs):
            return _train(store, store_path, out, tcfg, fcfg, device, init_ckpt, resume, echo, progress,
                          pretrain_store)


def _train(store: FeatureStore, store_path: Path, out: Path, tcfg: TrainConfig, fcfg: FusionConfig,
           device: torch.device, init_ckpt: Checkpoint | None, resume: bool, echo: Callable[[str], None],
           progress: bool, pretrain_store: Path | None) -> TrainResult:
    """The run itself, once its configs are valid and ``out`` is held."""
    note = random_weights_note(store.config)
    if note:
        echo(note)
    run = FusionRun(store, out, tcfg, fcfg, device)
    start = run.start_from(init_ckpt, resume, echo)
    record = {"store": str(Path(store_path).resolve())}
    if pretrain_store is not None:
        record["pretrain_store"] = str(Path(pretrain_store).resolve())
    result = run.fit(record, start, echo, progress)
    from cavnet.pipelines.plots import plot_curves

    plot_curves(out / "metrics.jsonl", out / "curves.png")
    return result


EVAL_SPLITS = ("val", "test")


def check_pretrain_store(target: Path, pretrain: Path, val_split: str = "val") -> None:
    """Refuse caption pretraining that would see what the target is scored on: the target store itself, or
    a store holding any video (by id) of the target's val/test splits (``val_split`` included); one line
    naming how many. Pretraining reads every row of its store, whatever its split."""
    if Path(target).resolve() == Path(pretrain).resolve():
        raise CavnetError(f"--pretrain-store {pretrain} is the target store itself: caption pretraining would "
                          "train on its val and test captions; pass another store (or --allow-overlap)")
    with FeatureStore(target) as t, FeatureStore(pretrain) as p:
        rows = t.rows()
        held_out = set(rows.ids[np.isin(rows.splits, (val_split, *EVAL_SPLITS))].tolist())
        shared = sorted(held_out & set(p.rows().ids.tolist()))
    if shared:
        shown = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
        raise CavnetError(f"--pretrain-store {pretrain} holds {len(shared)} videos of the val/test splits of "
                          f"{target} ({shown}): caption pretraining would train on their captions; remove them "
                          "from it (or pass --allow-overlap)")


def pretrain(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any], resume: bool,
             echo: Callable[[str], None], progress: bool) -> Path:
    """Caption pretraining on ``store_path`` into ``out``; returns its ``last.pt``."""
    device = resolve_device(tcfg.device)
    with FeatureStore(store_path) as store:
        run = FusionRun(store, out, tcfg, fusion_config_for(store, model_overrides), device, pretrain=True)
        start = run.start_from(None, resume, echo)
        run.fit({"store": str(Path(store_path).resolve()), "pretrain": True}, start, echo, progress)
    return out / "last.pt"
