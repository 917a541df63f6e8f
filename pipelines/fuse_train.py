"""fuse-train, wired: device, store and optional init checkpoint -> ``fuse.run.fusion.FusionRun`` -> curves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from cavnet.errors import CavnetError
from cavnet.extract.device import resolve_device
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.run.folder import hold_run_folder
from cavnet.fuse.train_config import TrainConfig
from cavnet.fuse.run.fusion import FusionRun, TrainResult, fusion_config_for


def run_fuse_train(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any],
                   init: Path | None = None, resume: bool = False, echo: Callable[[str], None] = print,
                   progress: bool = True, pretrain_store: Path | None = None,
                   pretrain_epochs: int = 0) -> TrainResult:
    """Train CAV-Net on ``store_path``; writes config.json, metrics.jsonl, last.pt, best.pt, curves.png.

    ``pretrain_store``: first a contrastive video-text pretraining on that store (captions or titles, no
    labels needed; every usable row) for ``pretrain_epochs`` (0: as many as ``tcfg.epochs``) in
    ``out/pretrain``, then training on ``store_path`` from its weights and temperature."""
    device = resolve_device(tcfg.device)
    if pretrain_store is not None:
        if init is not None:
            raise CavnetError("--init and --pretrain-store both give the starting weights; pass one")
        init = pretrain(pretrain_store, out / "pretrain", replace(tcfg, epochs=pretrain_epochs or tcfg.epochs,
                                                                  targets="video-text"),
                        model_overrides, resume, echo, progress)
    init_ckpt = Checkpoint.load(init) if init is not None else None
    with FeatureStore(store_path) as store, hold_run_folder(out):
        note = random_weights_note(store.config)
        if note:
            echo(note)
        run = FusionRun(store, out, tcfg, fusion_config_for(store, model_overrides), device)
        start = run.start_from(init_ckpt, resume, echo)
        record = {"store": str(Path(store_path).resolve())}
        if pretrain_store is not None:
            record["pretrain_store"] = str(Path(pretrain_store).resolve())
        result = run.fit(record, start, echo, progress)
        from cavnet.pipelines.plots import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png")
    return result


def pretrain(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any], resume: bool,
             echo: Callable[[str], None], progress: bool) -> Path:
    """Caption pretraining on ``store_path`` into ``out``; returns its ``last.pt``."""
    device = resolve_device(tcfg.device)
    with FeatureStore(store_path) as store:
        run = FusionRun(store, out, tcfg, fusion_config_for(store, model_overrides), device, pretrain=True)
        start = run.start_from(None, resume, echo)
        run.fit({"store": str(Path(store_path).resolve()), "pretrain": True}, start, echo, progress)
    return out / "last.pt"
