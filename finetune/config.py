"""Frozen configuration of a fine-tune run; saved into every fine-tune checkpoint.

What the model sees (backbones, weights, clip sampling, audio front end, text embeddings) is not here: it
comes from the ``--init`` checkpoint's store config, so a fine-tune continues what fuse-train started.
The optimiser fields are ``fuse.train_config.OptimConfig``'s, with fine-tuning's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cavnet.configs import MAX_WORKERS, Config, check_bool, check_choice, check_int, check_number
from cavnet.errors import CavnetError
from cavnet.fuse.train_config import MAX_LR, OptimConfig

FREEZE_STAGES = ("none", "stem", "layer1", "layer2", "layer3", "layer4")
AMP_MODES = ("auto", "off", "bf16")


@dataclass(frozen=True)
class AugmentConfig(Config):
    """What is randomised for a training clip (see the module docstring); ``enabled=False`` turns it off."""

    enabled: bool = True
    jitter_frames: int = 8
    crop_side: float = 8 / 7  # 112 -> frames decoded as 128 x 128
    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    audio_shift: float = 0.1  # seconds
    gain_db: float = 6.0

    def __post_init__(self) -> None:
        if self.jitter_frames < 0 or self.crop_side < 1.0 or not 0.0 <= self.flip <= 1.0:
            raise CavnetError("AugmentConfig: jitter_frames >= 0, crop_side >= 1 and 0 <= flip <= 1 are required")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0 or self.crop_ratio[0] <= 0 or self.crop_ratio[0] > self.crop_ratio[1]:
            raise CavnetError(f"AugmentConfig: bad crop_scale {self.crop_scale} or crop_ratio {self.crop_ratio}")


@dataclass(frozen=True)
class FinetuneConfig(OptimConfig):
    """One fine-tune run.

    init: the fuse-train (or fine-tune) checkpoint to start from.
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
    decode_workers: decode processes per process (None: ``extract.device.decode_workers``'s rule).
    amp: 'auto' runs the audio backbone in bf16 on CUDA and everything else in float32/TF32 (grouped 3D
        convolutions are slower in bf16); 'bf16' autocasts both backbones; 'off' is float32 throughout.
    eval_every: score val and write last.pt / best.pt every this many epochs (0: only when the run ends).
        (``OptimConfig``'s field: fine-tune saves whenever it scores.)
    save_every: also write last.pt every this many steps (mid-epoch resume); 0: only with the scores.
    max_steps: stop after this many optimizer steps in all (0: run every epoch); the schedule still
        spans every epoch, so a stopped run resumes onto the same learning rates.
    """

    init: str = ""
    end_to_end: bool = False
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4
    warmup_epochs: float = 0.25
    backbone_lr: float = 1e-5
    freeze_until: str = "none"
    freeze_audio: bool = False
    freeze_bn: bool = True
    grad_checkpoint: bool = False
    amp: str = "auto"
    decode_workers: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    save_every: int = 0
    max_steps: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.init:
            raise CavnetError("--init: a fuse-train or fine-tune checkpoint to start from is required")
        check_choice("--freeze-until", self.freeze_until, FREEZE_STAGES)
        check_choice("--amp", self.amp, AMP_MODES)
        check_number("--backbone-lr", self.backbone_lr, 0.0, maximum=MAX_LR)
        if self.decode_workers is not None:
            check_int("--decode-workers", self.decode_workers, 0, MAX_WORKERS)
        for name in ("save_every", "max_steps"):
            check_int("--" + name.replace("_", "-"), getattr(self, name), 0)
        for name in ("end_to_end", "freeze_audio", "freeze_bn", "grad_checkpoint"):
            check_bool("--" + name.replace("_", "-"), getattr(self, name))

    @property
    def trains_backbones(self) -> bool:
        """Whether any backbone weight can change in this run."""
        return self.end_to_end and self.backbone_lr > 0
