"""Frozen configuration of a fine-tune run; saved into every fine-tune checkpoint (``to_dict``/``from_dict``).

What the model sees (backbones, weights, clip sampling, audio front end, text embeddings) is not here: it
comes from the ``--init`` checkpoint's store config, so a fine-tune continues what fuse-train started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cavnet.errors import CavnetError
from cavnet.finetune.augment import AugmentConfig

FREEZE_STAGES = ("none", "stem", "layer1", "layer2", "layer3", "layer4")
AMP_MODES = ("auto", "off", "bf16")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tune run.

    end_to_end: gradients reach the backbones; False keeps them frozen (features computed on the fly,
        with augmentation) and trains the fusion and the temperature only.
    batch_size: videos per optimizer step over all processes (each of W processes takes batch_size / W).
    lr / backbone_lr: AdamW learning rates of the fusion + temperature and of both backbones.
    freeze_until: visual stages kept frozen, BatchNorm statistics included: 'stem' (conv1, bn1) or
        'layerK' (the stem and layer1..layerK); 'none' trains them all. freeze_audio keeps the audio
        backbone frozen.
    freeze_bn: BatchNorm layers of the backbones keep their running statistics (eval-mode BN) while
        their affine weights still train.
    grad_checkpoint: recompute each 3D-ResNeXt block in the backward pass instead of storing activations.
    amp: 'auto' runs the audio backbone in bf16 on CUDA and everything else in float32/TF32 (grouped 3D
        convolutions are slower in bf16); 'bf16' autocasts both backbones; 'off' is float32 throughout.
    eval_every: score val and write last.pt / best.pt every this many epochs (0: only when the run ends).
    save_every: also write last.pt every this many steps (mid-epoch resume); 0: only with the scores.
    max_steps: stop after this many optimizer steps in all (0: run every epoch); the schedule still
        spans every epoch, so a stopped run resumes onto the same learning rates.
    """

    init: str
    end_to_end: bool = True
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4
    backbone_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 0.25
    freeze_until: str = "none"
    freeze_audio: bool = False
    freeze_bn: bool = True
    grad_checkpoint: bool = False
    amp: str = "auto"
    decode_workers: int = 2
    device: str = "auto"
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    eval_every: int = 1
    save_every: int = 0
    max_steps: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.freeze_until not in FREEZE_STAGES:
            raise CavnetError(f"--freeze-until must be one of {', '.join(FREEZE_STAGES)}, not {self.freeze_until!r}")
        if self.amp not in AMP_MODES:
            raise CavnetError(f"--amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise CavnetError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("decode_workers", "eval_every", "save_every", "max_steps"):
            if getattr(self, name) < 0:
                raise CavnetError(f"--{name.replace('_', '-')} must be >= 0")
        if self.lr <= 0 or self.backbone_lr < 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise CavnetError("--lr must be > 0; --backbone-lr, --weight-decay and warmup must be >= 0")

    @property
    def trains_backbones(self) -> bool:
        """Whether any backbone weight can change in this run."""
        return self.end_to_end and self.backbone_lr > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneConfig":
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        aug = AugmentConfig.from_dict(d.pop("augment", {}))
        return cls(augment=aug, **{k: v for k, v in d.items() if k in names})
