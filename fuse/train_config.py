"""Frozen configuration of a fuse-train run (the model's own lives in ``fuse.config.FusionConfig``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    seed: int = 0
    device: str = "auto"
    targets: str = "label"  # label | video-text
    train_split: str = "train"
    val_split: str = "val"
    memory_budget_gb: float = 0.0  # 0: half of the available RAM decides whether the store is read into RAM
    stream: bool = False  # force chunk-aligned block streaming from the store

    def __post_init__(self) -> None:
        if self.targets not in ("label", "video-text"):
            raise ValueError(f"targets must be 'label' or 'video-text', not {self.targets!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.lr <= 0:
            raise ValueError("lr must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
