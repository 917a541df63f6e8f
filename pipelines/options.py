"""The options of ``cavnet evaluate`` and ``cavnet predict`` (how a checkpoint is scored; nothing here
changes a number a model computes). Frozen configs, so the CLI derives its options from their fields;
imports no torch, so ``cavnet --help`` stays instant."""

from __future__ import annotations

from dataclasses import dataclass

from cavnet.configs import MAX_BATCH, MAX_WORKERS, Config, check_choice, check_device, check_int

EVAL_VIEWS = ("all", "centre")


@dataclass(frozen=True)
class EvaluateOptions(Config):
    """How ``cavnet evaluate`` scores a checkpoint: ``split``; ``device``; for raw videos ``batch_size``
    (videos per batch) and ``decode_workers`` (None: ``extract.device.decode_workers``'s rule); ``top_k``
    labels per video in the predictions CSV; ``text_set``: the label-text set to score the classes with
    (None: the one the checkpoint trained with); ``views``: on a store with spatial views, ``all`` averages
    the class scores over them, ``centre`` scores the centre view only (raw videos: the centre crop);
    ``classes``: score on this subset of the store's classes
    (``fuse.classes``; None: the checkpoint's own classes, a subset when it trained on one)."""

    split: str = "val"
    device: str = "auto"
    batch_size: int = 8
    decode_workers: int | None = None
    top_k: int = 5
    text_set: str | None = None
    views: str = "all"
    classes: str | None = None

    def __post_init__(self) -> None:
        check_choice("--views", self.views, EVAL_VIEWS)
        check_int("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_int("--top-k", self.top_k, 1, 1 << 20)
        if self.decode_workers is not None:
            check_int("--decode-workers", self.decode_workers, 0, MAX_WORKERS)
        check_device("--device", self.device)



@dataclass(frozen=True)
class PredictOptions(Config):
    """How ``cavnet predict`` scores files: ``top_k`` labels per file, ``device``, ``batch_size`` videos per
    batch, ``decode_workers`` (None: ``extract.device.decode_workers``'s rule), ``text_set``: score the
    classes with this label-text set of the checkpoint's store (None: the one it trained with)."""

    top_k: int = 5
    device: str = "auto"
    batch_size: int = 8
    decode_workers: int | None = None
    text_set: str | None = None

    def __post_init__(self) -> None:
        check_int("--top-k", self.top_k, 1, 1 << 20)
        check_int("--batch-size", self.batch_size, 1, MAX_BATCH)
        if self.decode_workers is not None:
            check_int("--decode-workers", self.decode_workers, 0, MAX_WORKERS)
        check_device("--device", self.device)
