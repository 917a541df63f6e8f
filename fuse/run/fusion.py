"""fuse-train's run: store splits -> CAV-Net -> per-epoch metrics and checkpoints, through the training-run
harness (``fuse.run.harness``). The command's wiring (device, store, curves) is ``cavnet.pipelines.fuse_train``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.data import InMemorySplit, StreamedSplit, open_split, text_groups
from cavnet.fuse.engine import TunedText, score, train_one_epoch
from cavnet.fuse.loss import make_loss
from cavnet.fuse.metrics import accuracy_metrics
from cavnet.fuse.model import CAVNet, SentenceEncoder
from cavnet.fuse.run.folder import RunFolder
from cavnet.fuse.run.harness import TrainingRun, changed_options, load_tuned_text, require_text_head, temperature
from cavnet.fuse.run.optim import make_optimizer, steps_per_epoch
from cavnet.fuse.train_config import TrainConfig


@dataclass
class TrainResult:
    out: Path
    best: dict[str, float]
    last: dict[str, Any]
    skipped: dict[str, int]


def fusion_config_for(store: FeatureStore, overrides: dict[str, Any]) -> FusionConfig:
    """The fusion config for ``store``'s dimensions and class count, with ``overrides`` (d_model, ablations)."""
    d = store.dims
    return FusionConfig(visual_dim=d.visual_dim, audio_dim=d.audio_dim, text_dim=store.text_dim,
                        num_classes=len(store.class_names), **overrides)


@dataclass
class Splits:
    """The training and validation splits of a store, and the unusable rows left out of each."""

    train: InMemorySplit | StreamedSplit
    val: InMemorySplit | StreamedSplit | None
    skipped: dict[str, int]

    @classmethod
    def open(cls, store: FeatureStore, tcfg: TrainConfig, fcfg: FusionConfig, device: torch.device) -> "Splits":
        """Both splits, in RAM (on ``device`` when it is a GPU with room) or streamed; see ``open_split``."""
        need_labels = tcfg.targets == "label" or fcfg.head == "linear"
        train_idx, skipped_train = _split_index(store, tcfg.train_split, need_labels)
        val_idx, skipped_val = _split_index(store, tcfg.val_split, True)
        _check_split(store, train_idx, tcfg.train_split, need_labels)
        _check_split(store, val_idx, tcfg.val_split, False)
        budget = int(tcfg.memory_budget_gb * 2**30)
        return cls(open_split(store, train_idx, tcfg.targets, tcfg.stream, budget, device, tcfg.train_views),
                   open_split(store, val_idx, "label", tcfg.stream, budget, device),
                   {"train": skipped_train, "val": skipped_val})


    @classmethod
    def open_pretrain(cls, store: FeatureStore, tcfg: TrainConfig) -> "Splits":
        """Caption pretraining: every usable row of the store, whatever its split or label; no validation."""
        rows = store.rows()
        index = rows.select(None, labelled=False)
        if len(index) < 2:
            raise CavnetError(f"{store.path}: fewer than two usable videos to pretrain on")
        budget = int(tcfg.memory_budget_gb * 2**30)
        return cls(open_split(store, index, "video-text", tcfg.stream, budget), None,
                   {"train": len(rows.ids) - len(index), "val": 0})


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


def build_training(fcfg: FusionConfig, tcfg: TrainConfig, steps: int, device: torch.device,
                   text: SentenceEncoder | None = None
                   ) -> tuple[CAVNet, nn.Module | None, torch.optim.Optimizer, Any]:
    """Model (seeded by ``tcfg.seed``), loss (head 'text': ``fcfg.loss``), AdamW and its warm-up + cosine
    schedule over ``steps`` per epoch; ``text``: a sentence encoder to fine-tune, in a group of its own at
    ``tcfg.text_encoder_lr``."""
    torch.manual_seed(tcfg.seed)
    model = CAVNet(fcfg).to(device)
    loss_fn = make_loss(fcfg.loss).to(device) if fcfg.head == "text" else None
    params = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    parts = [("fusion", params, tcfg.lr)]
    if text is not None:
        parts.append(("text_encoder", list(text.parameters()), tcfg.text_encoder_lr))
    optimizer, scheduler = make_optimizer(parts, tcfg, steps)
    return model, loss_fn, optimizer, scheduler


class FusionRun(TrainingRun):
    """One fuse-train run on an open store: model, loss, optimiser and schedule, and its run folder."""

    # TrainConfig fields a resumed run may change: where it runs and how it reads, not what it computes.
    resume_free = ("device", "memory_budget_gb", "stream", "tensorboard", "checkpoint_every", "eval_every")

    def __init__(self, store: FeatureStore, out: Path, tcfg: TrainConfig, fcfg: FusionConfig,
                 device: torch.device, pretrain: bool = False) -> None:
        """``pretrain``: contrastive video-text training on every usable row of ``store`` (captions or
        titles, no labels needed), no validation; ``tcfg.targets`` must be 'video-text'."""
        self.store, self.cfg, self.tcfg, self.fcfg, self.device = store, tcfg, tcfg, fcfg, device
        if pretrain and (fcfg.head != "text" or tcfg.targets != "video-text"):
            raise CavnetError("caption pretraining needs head 'text' and video-text targets")
        self.splits = Splits.open_pretrain(store, tcfg) if pretrain else Splits.open(store, tcfg, fcfg, device)
        table = store.text_set("default" if pretrain else tcfg.text_set)  # pretraining scores no classes
        self.class_embedding = torch.from_numpy(table.embedding).to(device)
        # every label-text set of the store, for evaluate / predict --text-set (stale once the encoder is tuned)
        self.text_sets = None if tcfg.tunes_text else {
            n: torch.from_numpy(store.text_set(n).embedding) for n in store.text_sets()}
        self.steps_per_epoch = steps_per_epoch(len(self.splits.train), tcfg.batch_size)
        self.text = tuned_text(store, self.splits.train.index, tcfg, fcfg, device) if tcfg.tunes_text else None
        self.model, self.loss_fn, self.optimizer, self.scheduler = build_training(
            fcfg, tcfg, self.steps_per_epoch, device, self.text.encoder if self.text is not None else None)
        self.folder = RunFolder(out, {"metrics.jsonl": "epoch"}, tensorboard=tcfg.tensorboard)
        self.echo, self.progress = print, False
        self._resumed: Checkpoint | None = None

    @property
    def save_interval(self) -> int:
        return self.tcfg.checkpoint_every

    def checkpoint_fields(self) -> dict[str, Any]:
        s = self.store
        return dict(model=self.model.state_dict(), fusion=self.fcfg, class_names=list(s.class_names),
                    store_config=s.config.to_json(), store_dims=dataclasses.asdict(s.dims), text_model=s.text_model,
                    train=self.tcfg.to_dict(), text_sets=self.text_sets)

    def check_resumable(self, ckpt: Checkpoint) -> list[str]:
        ckpt.check_matches_store(dataclasses.asdict(self.store.dims), self.store.text_dim,
                                 list(self.store.class_names), str(self.store.path))
        return changed_options(ckpt.fusion.to_dict(), self.fcfg.to_dict(), list(self.fcfg.to_dict()))

    def recorded_config(self, ckpt: Checkpoint) -> dict[str, Any]:
        return ckpt.train

    def load_weights(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.model)

    def start_from(self, init: Checkpoint | None, resume: bool, echo: Callable[[str], None]) -> int:
        """Load ``last.pt`` (``resume``) or ``init``'s weights; the epoch to start at."""
        resumed = self.folder.resumable(resume)
        if resumed is not None:
            start, _ = self.resume(resumed)
            echo(f"resuming {self.folder.out} at epoch {start + 1}")
        elif init is not None:
            init.check_matches_store(dataclasses.asdict(self.store.dims), self.store.text_dim,
                                     list(self.store.class_names), str(self.store.path), as_init=True)
            try:
                self.model.load_state_dict(init.model)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[1:2] or [str(exc)]
                raise CavnetError(f"the init checkpoint's fusion differs from this run's: {first[0].strip()}") from None
            if self.loss_fn is not None and init.loss:
                self.loss_fn.load_state_dict(init.loss)  # the learned temperature goes on too
            if self.text is not None and init.text_encoder is not None:
                self.text.encoder.model.load_state_dict(init.text_encoder)  # a tuned encoder goes on tuning
        self._resumed = resumed
        return resumed.state.epoch if resumed is not None else 0

    def train_epoch(self, epoch: int, skip: int) -> tuple[dict[str, Any], int, bool]:
        from tqdm import tqdm

        tcfg, train = self.tcfg, self.splits.train
        gen = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch)
        with tqdm(total=len(train), desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="video",
                  disable=not self.progress, leave=False) as bar:
            stats = train_one_epoch(self.model, self.loss_fn, self.optimizer, self.scheduler,
                                    train.batches(tcfg.batch_size, gen), self.class_embedding, tcfg.targets,
                                    self.device, bar, self.text)
        line = {"epoch": epoch + 1, **stats, "temperature": temperature(self.loss_fn),
                "lr": self.scheduler.get_last_lr()[0]}
        return line, self.steps_per_epoch, False

    def score_val(self) -> dict[str, Any] | None:
        if self.splits.val is None:  # caption pretraining has no val split: nothing to validate against
            return None
        sc = score(self.model, self.splits.val.batches(512), self.scoring_classes(), self.fcfg.head, self.device)
        return accuracy_metrics(sc.scores, sc.labels, self.fcfg.num_classes)

    def protocol(self) -> dict[str, str]:
        """What the run trains and validates on, in views (``fuse.scoring.views.protocol``)."""
        from cavnet.fuse.scoring.views import protocol

        train = self.splits.train
        held = getattr(train, "views", 1)
        how = (f"one of {held} views per video per epoch, drawn at random" if held > 1 and
               getattr(train, "mode", "") == "random" else "the centre view")
        return {"train": how, "val": protocol(self.store, views=False)}

    def report(self, line: dict[str, Any]) -> None:
        self.echo(_epoch_line(line, pretrain=self.splits.val is None))

    def fit(self, record: dict[str, Any], start: int, echo: Callable[[str], None], progress: bool) -> TrainResult:
        self.echo, self.progress = echo, progress
        train, val = self.splits.train, self.splits.val
        self.folder.start({**record, "fusion": self.fcfg.to_dict(), "train": self.tcfg.to_dict(),
                           "skipped_rows": self.splits.skipped}, self._resumed, self.store)
        if self.folder.record:
            self.folder.record["protocol"] = self.protocol()  # run.json says it too
        how = ("streamed" if isinstance(train, StreamedSplit) else
               f"on {train.device}" if train.device.type == "cuda" else "in RAM")
        echo(f"train {len(train)} videos, val {len(val) if val is not None else 0} ({how}); skipped unusable rows: "
             f"train {self.splits.skipped['train']}, val {self.splits.skipped['val']}")
        last = self.run_epochs(start)
        self.folder.finish()
        return TrainResult(self.folder.out, self.folder.best, last, self.splits.skipped)


def _epoch_line(m: dict[str, Any], pretrain: bool) -> str:
    """The line printed after an epoch: its loss, and its val scores when it was scored."""
    if pretrain:
        return f"pretrain epoch {m['epoch']}: loss {m['loss']:.4f}  temperature {m['temperature']:.4f}"
    scores = (f"  val top-1 {m['top1']:.1f}  top-5 {m['top5']:.1f}  mean-class {m['mean_class']:.1f}"
              if "top1" in m else "")
    return f"epoch {m['epoch']}: loss {m['loss']:.4f}{scores}"


def tuned_text(store: FeatureStore, index: np.ndarray, tcfg: TrainConfig, fcfg: FusionConfig,
               device: torch.device) -> TunedText:
    """The store's sentence encoder (its config's ``text_model``) ready to fine-tune on the strings the store
    embedded: the class prompts, and for video-text targets the stored string of each group of rows
    ``index``. Label targets need only the class prompts, which every store keeps; video-text targets on a
    store without stored strings, or head 'linear', are refused with one line."""
    require_text_head(fcfg.head)
    by_group = {}
    if tcfg.targets == "video-text":
        strings = store.video_strings(index)  # refuses a store from before stored texts
        groups = text_groups(store.video_text()[index])
        by_group = {int(g): str(t) for g, t in zip(groups, strings)}
    return load_tuned_text(store.config.text_model, store.text_dim, device, store.class_prompts(), by_group)
