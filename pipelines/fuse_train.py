"""fuse-train, wired: device, store and optional init checkpoint -> ``fuse.trainer.FusionRun`` -> curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cavnet.extract.device import resolve_device
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.run import hold_run_folder
from cavnet.fuse.train_config import TrainConfig
from cavnet.fuse.trainer import FusionRun, TrainResult, fusion_config_for


def run_fuse_train(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any],
                   init: Path | None = None, resume: bool = False, echo: Callable[[str], None] = print,
                   progress: bool = True) -> TrainResult:
    """Train CAV-Net on ``store_path``; writes config.json, metrics.jsonl, last.pt, best.pt, curves.png."""
    device = resolve_device(tcfg.device)
    init_ckpt = Checkpoint.load(init) if init is not None else None
    with FeatureStore(store_path) as store, hold_run_folder(out):
        note = random_weights_note(store.config)
        if note:
            echo(note)
        run = FusionRun(store, out, tcfg, fusion_config_for(store, model_overrides), device)
        start = run.start_from(init_ckpt, resume, echo)
        result = run.fit({"store": str(Path(store_path).resolve())}, start, echo, progress)
        from cavnet.pipelines.plots import plot_curves

        plot_curves(out / "metrics.jsonl", out / "curves.png")
    return result
