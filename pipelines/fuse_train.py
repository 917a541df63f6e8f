"""fuse-train, wired: store -> splits -> CAV-Net -> per-epoch metrics, checkpoints and curves."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.provenance import random_weights_note
from cavnet.extract.store_reader import FeatureStore
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.data import open_split
from cavnet.fuse.engine import accuracy_metrics, score, train_one_epoch, warmup_cosine
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.model import CAVNet
from cavnet.fuse.train_config import TrainConfig
from cavnet.pipelines.checkpoint import check_matches_store, load_checkpoint, save_checkpoint, trim_jsonl
from cavnet.pipelines.extract_batch import resolve_device


@dataclass
class TrainResult:
    out: Path
    best: dict[str, float]
    last: dict[str, Any]
    skipped: dict[str, int]


def fusion_config_for(store: FeatureStore, overrides: dict[str, Any]) -> FusionConfig:
    d = store.dims
    return FusionConfig(visual_dim=d.visual_dim, audio_dim=d.audio_dim, text_dim=store.text_dim,
                        num_classes=len(store.class_names), **overrides)


def _split_index(store: FeatureStore, split: str, need_labels: bool) -> tuple[np.ndarray, int]:
    rows = store.rows()
    index = rows.select(split, labelled=need_labels)
    skipped = int(((rows.splits == split) & ~np.isin(np.arange(len(rows.ids)), index)).sum())
    return index, skipped


def _check_split(store: FeatureStore, index: np.ndarray, split: str, need_two_classes: bool) -> None:
    if len(index) == 0:
        raise CavnetError(f"{store.path}: split {split!r} has no usable labelled videos")
    if need_two_classes and len(np.unique(store.rows().labels[index])) < 2:
        raise CavnetError(f"{store.path}: split {split!r} has a single class; training needs at least two")


def _build(fcfg: FusionConfig, tcfg: TrainConfig, steps: int, device: torch.device):
    torch.manual_seed(tcfg.seed)
    model = CAVNet(fcfg).to(device)
    loss_fn = ContrastiveLoss().to(device) if fcfg.head == "text" else None
    params = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    # decay matrices only: not biases, norms, position tables' scalars, nor the temperature
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": tcfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=tcfg.lr)
    warmup = int(round(tcfg.warmup_epochs * steps / max(1, tcfg.epochs)))
    return model, loss_fn, optimizer, warmup_cosine(optimizer, warmup, steps)


def _state(model, loss_fn, optimizer, scheduler, epoch, best, fcfg, tcfg, store, class_emb) -> dict[str, Any]:
    return {"model": model.state_dict(), "loss": loss_fn.state_dict() if loss_fn is not None else {},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
            "best": best, "fusion_config": fcfg.to_dict(), "train_config": tcfg.to_dict(),
            "store_config": store.config.to_json(), "store_dims": dataclasses.asdict(store.dims),
            "class_names": list(store.class_names), "class_embedding": class_emb.cpu(),
            "text_model": store.text_model, "rng": torch.get_rng_state()}


def run_fuse_train(store_path: Path, out: Path, tcfg: TrainConfig, model_overrides: dict[str, Any],
                   init: Path | None = None, resume: bool = False, echo: Callable[[str], None] = print,
                   progress: bool = True) -> TrainResult:
    """Train CAV-Net on ``store_path``; writes config.json, metrics.jsonl, last.pt, best.pt, curves.png."""
    from tqdm import tqdm

    device = resolve_device(tcfg.device)
    with FeatureStore(store_path) as store:
        fcfg = fusion_config_for(store, model_overrides)
        if random_weights_note(store.config):
            echo(random_weights_note(store.config))
        need_labels = tcfg.targets == "label" or fcfg.head == "linear"
        train_idx, skipped_train = _split_index(store, tcfg.train_split, need_labels)
        val_idx, skipped_val = _split_index(store, tcfg.val_split, True)
        _check_split(store, train_idx, tcfg.train_split, need_labels)
        _check_split(store, val_idx, tcfg.val_split, False)
        budget = int(tcfg.memory_budget_gb * 2**30)
        train = open_split(store, train_idx, tcfg.targets, tcfg.stream, budget)
        val = open_split(store, val_idx, "label", tcfg.stream, budget)
        class_emb = torch.from_numpy(store.class_embedding).to(device)
        steps = tcfg.epochs * -(-len(train) // tcfg.batch_size)
        model, loss_fn, optimizer, scheduler = _build(fcfg, tcfg, steps, device)
        start, best = 0, {"top1": -1.0}
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / "last.pt").exists():
            start, best = _resume(out / "last.pt", model, loss_fn, optimizer, scheduler)
            echo(f"resuming {out} at epoch {start + 1}")
        elif init is not None:
            _init_weights(init, model, store)
        trim_jsonl(out / "metrics.jsonl", "epoch", start)
        skipped = {"train": skipped_train, "val": skipped_val}
        (out / "config.json").write_text(json.dumps({"fusion": fcfg.to_dict(), "train": tcfg.to_dict(),
                                                     "store": str(store_path), "skipped_rows": skipped}, indent=2))
        echo(f"train {len(train)} videos, val {len(val)} ({'streamed' if type(train).__name__ == 'StreamedSplit' else 'in RAM'}); "
             f"skipped unusable rows: train {skipped_train}, val {skipped_val}")
        last: dict[str, Any] = {}
        for epoch in range(start, tcfg.epochs):
            gen = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch)
            with tqdm(total=len(train), desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="video",
                      disable=not progress, leave=False) as bar:
                stats = train_one_epoch(model, loss_fn, optimizer, scheduler, train.batches(tcfg.batch_size, gen),
                                        class_emb, tcfg.targets, device, bar)
            sc = score(model, val.batches(512), class_emb, fcfg.head, device)
            last = {"epoch": epoch + 1, **stats, **accuracy_metrics(sc.scores, sc.labels, fcfg.num_classes),
                    "temperature": _temperature(loss_fn), "lr": scheduler.get_last_lr()[0]}
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(last) + "\n")
            if last["top1"] > best["top1"]:
                best = dict(last)
                save_checkpoint(out / "best.pt", _state(model, loss_fn, optimizer, scheduler, epoch + 1, best,
                                                        fcfg, tcfg, store, class_emb))
            save_checkpoint(out / "last.pt", _state(model, loss_fn, optimizer, scheduler, epoch + 1, best,
                                                    fcfg, tcfg, store, class_emb))
            echo(f"epoch {epoch + 1}: loss {last['loss']:.4f}  val top-1 {last['top1']:.1f}  "
                 f"top-5 {last['top5']:.1f}  mean-class {last['mean_class']:.1f}")
    from cavnet.pipelines.plots import plot_curves
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    return TrainResult(out, best, last, skipped)


def _temperature(loss_fn) -> float:
    if loss_fn is None:
        return float("nan")
    return float(1.0 / loss_fn.logit_scale.detach().clamp(max=np.log(100.0)).exp())


def _resume(path: Path, model, loss_fn, optimizer, scheduler) -> tuple[int, dict[str, float]]:
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
    if loss_fn is not None:
        loss_fn.load_state_dict(state["loss"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["epoch"]), dict(state["best"])


def _init_weights(path: Path, model: CAVNet, store: FeatureStore) -> None:
    state = load_checkpoint(path)
    check_matches_store(state, dataclasses.asdict(store.dims), store.text_dim, len(store.class_names),
                        str(store.path))
    model.load_state_dict(state["model"])
