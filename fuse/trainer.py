"""fuse-train's run: store splits -> CAV-Net -> per-epoch metrics and checkpoints, through the shared
run harness (``fuse.run``). The command's wiring (device, store, curves) is ``cavnet.pipelines.fuse_train``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint, TrainingState
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.data import InMemorySplit, StreamedSplit, open_split, text_groups
from cavnet.fuse.engine import TunedText, score, train_one_epoch, train_steps, warmup_cosine
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.metrics import accuracy_metrics
from cavnet.fuse.model import CAVNet, SentenceEncoder
from cavnet.fuse.run import RunFolder, changed_options, param_groups, restore, rng_state, temperature
from cavnet.fuse.train_config import TrainConfig

# TrainConfig fields a resumed run may change: where it runs and how it reads, not what it computes.
RESUME_FREE = ("device", "memory_budget_gb", "stream", "tensorboard", "checkpoint_every", "eval_every")


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
        return cls(open_split(store, train_idx, tcfg.targets, tcfg.stream, budget, device),
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


def build_training(fcfg: FusionConfig, tcfg: TrainConfig, steps_per_epoch: int, device: torch.device,
                   text: SentenceEncoder | None = None
                   ) -> tuple[CAVNet, ContrastiveLoss | None, torch.optim.Optimizer, Any]:
    """Model (seeded by ``tcfg.seed``), loss (head 'text'), AdamW and its warm-up + cosine schedule;
    ``text``: a sentence encoder to fine-tune, in a parameter group of its own at ``tcfg.text_encoder_lr``."""
    torch.manual_seed(tcfg.seed)
    model = CAVNet(fcfg).to(device)
    loss_fn = ContrastiveLoss().to(device) if fcfg.head == "text" else None
    params = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    parts = [("fusion", params, tcfg.lr)]
    if text is not None:
        parts.append(("text_encoder", list(text.parameters()), tcfg.text_encoder_lr))
    optimizer = torch.optim.AdamW(param_groups(parts, tcfg.weight_decay), lr=tcfg.lr)
    scheduler = warmup_cosine(optimizer, tcfg.warmup_steps(steps_per_epoch), tcfg.epochs * steps_per_epoch)
    return model, loss_fn, optimizer, scheduler


class FusionRun:
    """One fuse-train run on an open store: model, loss, optimiser and schedule, and its run folder."""

    def __init__(self, store: FeatureStore, out: Path, tcfg: TrainConfig, fcfg: FusionConfig,
                 device: torch.device, pretrain: bool = False) -> None:
        """``pretrain``: contrastive video-text training on every usable row of ``store`` (captions or
        titles, no labels needed), no validation; ``tcfg.targets`` must be 'video-text'."""
        self.store, self.tcfg, self.fcfg, self.device = store, tcfg, fcfg, device
        if pretrain and (fcfg.head != "text" or tcfg.targets != "video-text"):
            raise CavnetError("caption pretraining needs head 'text' and video-text targets")
        self.splits = Splits.open_pretrain(store, tcfg) if pretrain else Splits.open(store, tcfg, fcfg, device)
        self.class_emb = torch.from_numpy(store.class_embedding).to(device)
        self.steps_per_epoch = train_steps(len(self.splits.train), tcfg.batch_size)
        self.text = tuned_text(store, self.splits.train.index, tcfg, fcfg, device) if tcfg.tunes_text else None
        self.model, self.loss_fn, self.optimizer, self.scheduler = build_training(
            fcfg, tcfg, self.steps_per_epoch, device, self.text.encoder if self.text is not None else None)
        self.folder = RunFolder(out, {"metrics.jsonl": "epoch"}, tensorboard=tcfg.tensorboard)
        self._resumed: Checkpoint | None = None

    def checkpoint(self, epoch: int) -> Checkpoint:
        rng, cuda_rng = rng_state(self.device)
        state = TrainingState(self.optimizer.state_dict(), self.scheduler.state_dict(), epoch, self.folder.best,
                              rng, step=int(self.scheduler.last_epoch), cuda_rng=cuda_rng)
        s, text = self.store, self.text
        return Checkpoint(model=self.model.state_dict(), fusion=self.fcfg, class_names=list(s.class_names),
                          class_embedding=self.scoring_classes().cpu(), store_config=s.config.to_json(),
                          store_dims=dataclasses.asdict(s.dims), text_model=s.text_model, train=self.tcfg.to_dict(),
                          loss=self.loss_fn.state_dict() if self.loss_fn is not None else {}, state=state,
                          text_encoder=text.state() if text is not None else None)

    def scoring_classes(self) -> torch.Tensor:
        """(C, Dt) the class embeddings val scoring and the checkpoint use: the store's, or the class prompts
        through the tuned encoder as it is now."""
        return self.text.class_embedding() if self.text is not None else self.class_emb

    def start_from(self, init: Checkpoint | None, resume: bool, echo: Callable[[str], None]) -> int:
        """Load ``last.pt`` (``resume``) or ``init``'s weights; the epoch to start at."""
        resumed = self.folder.resumable(resume)
        if resumed is not None:
            self._check_resume(resumed)
            self.model.load_state_dict(resumed.model)
            if self.loss_fn is not None:
                self.loss_fn.load_state_dict(resumed.loss)
            if self.text is not None:
                self.text.resume(resumed.text_encoder, self.folder.last)
            restore(resumed.state, self.optimizer, self.scheduler, self.device)
            echo(f"resuming {self.folder.out} at epoch {resumed.state.epoch + 1}")
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

    def _check_resume(self, ckpt: Checkpoint) -> None:
        where = self.folder.last
        ckpt.check_matches_store(dataclasses.asdict(self.store.dims), self.store.text_dim,
                                 list(self.store.class_names), str(self.store.path))
        model = changed_options(ckpt.fusion.to_dict(), self.fcfg.to_dict(), list(self.fcfg.to_dict()))
        keep = [k for k in self.tcfg.to_dict() if k not in RESUME_FREE]
        train = changed_options(ckpt.train, self.tcfg.to_dict(), keep)
        if model or train:
            raise CavnetError(f"{where} was trained with other {', '.join(model + train)}; resume it with the same "
                              "options, or start a new run in another --out")

    def _due(self, epochs_done: int, every: int) -> bool:
        """Whether a thing done ``every`` epochs (0: only after the last) is due after ``epochs_done``."""
        return epochs_done == self.tcfg.epochs or (every > 0 and epochs_done % every == 0)

    def fit(self, record: dict[str, Any], start: int, echo: Callable[[str], None], progress: bool) -> TrainResult:
        from tqdm import tqdm

        tcfg, train, val = self.tcfg, self.splits.train, self.splits.val
        self.folder.start({**record, "fusion": self.fcfg.to_dict(), "train": tcfg.to_dict(),
                           "skipped_rows": self.splits.skipped}, self._resumed, self.store)
        how = ("streamed" if isinstance(train, StreamedSplit) else
               f"on {train.device}" if train.device.type == "cuda" else "in RAM")
        echo(f"train {len(train)} videos, val {len(val) if val is not None else 0} ({how}); skipped unusable rows: "
             f"train {self.splits.skipped['train']}, val {self.splits.skipped['val']}")
        last: dict[str, Any] = {}
        pending: Checkpoint | None = None  # a best.pt not written yet (checkpoint_every > 1 or 0)
        for epoch in range(start, tcfg.epochs):
            gen = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch)
            with tqdm(total=len(train), desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="video",
                      disable=not progress, leave=False) as bar:
                stats = train_one_epoch(self.model, self.loss_fn, self.optimizer, self.scheduler,
                                        train.batches(tcfg.batch_size, gen), self.class_emb, tcfg.targets,
                                        self.device, bar, self.text)
            last = {"epoch": epoch + 1, **stats, "temperature": temperature(self.loss_fn),
                    "lr": self.scheduler.get_last_lr()[0]}
            best_now = False  # caption pretraining has no val split: nothing to validate against
            if val is not None and self._due(epoch + 1, tcfg.eval_every):
                sc = score(self.model, val.batches(512), self.scoring_classes(), self.fcfg.head, self.device)
                last.update(accuracy_metrics(sc.scores, sc.labels, self.fcfg.num_classes))
                best_now = self.folder.improved(last)
            self.folder.append("metrics.jsonl", last)
            if self._due(epoch + 1, tcfg.checkpoint_every):
                ckpt = self.checkpoint(epoch + 1)
                if best_now or pending is not None:
                    self.folder.save("best.pt", ckpt if best_now else pending)
                self.folder.save("last.pt", ckpt)
                pending = None
            elif best_now:
                pending = copy.deepcopy(self.checkpoint(epoch + 1))  # a snapshot: training goes on
            echo(_epoch_line(last, pretrain=val is None))
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
    from cavnet.extract.text import TextModelError, load_sentence_model

    if fcfg.head != "text":
        raise CavnetError("--text-encoder-lr needs the text head (head 'linear' has no text side)")
    prompts, by_group = store.class_prompts(), {}
    if tcfg.targets == "video-text":
        strings = store.video_strings(index)  # refuses a store from before stored texts
        groups = text_groups(store.video_text()[index])
        by_group = {int(g): str(t) for g, t in zip(groups, strings)}
    try:
        model = load_sentence_model(store.config.text_model, str(device), store.text_dim)
    except TextModelError as exc:
        raise CavnetError(f"--text-encoder-lr: {exc}") from None
    return TunedText(SentenceEncoder(model), prompts, by_group)
