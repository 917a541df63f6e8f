"""Frozen, typed configuration of stage one; saved whole into every store as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cavnet.configs import Config, check_choice, check_int
from cavnet.errors import CavnetError

# 3D-ResNeXt (Hara et al., CVPR 2018): pixels 0-255 minus the ActivityNet mean, std 1.
RESNEXT_MEAN = (114.7748, 107.7354, 99.4750)
RESNEXT_STD = (1.0, 1.0, 1.0)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass(frozen=True)
class ClipSampling(Config):
    """How visual clips are cut from a video: ``clips`` clips of ``frames`` frames, spread uniformly,
    resized to short side ``short_side`` and centre-cropped to ``size`` x ``size``."""

    clips: int = 10
    frames: int = 16
    short_side: int = 112
    size: int = 112
    mean: tuple[float, float, float] = RESNEXT_MEAN
    std: tuple[float, float, float] = RESNEXT_STD

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "short_side", "size"):
            check_int("--" + name.replace("_", "-"), getattr(self, name), 1)
        if self.size > self.short_side:
            raise CavnetError(f"crop size {self.size} is larger than the short side {self.short_side}")


@dataclass(frozen=True)
class LogMel(Config):
    """Audio front end: 16 kHz mono, windowed log-mel spectrogram cut into fixed-length examples.

    The defaults are the VGGish recipe: 25 ms periodic-Hann window, 10 ms hop, 512-point FFT,
    64 HTK mel bands over 125-7500 Hz, log(mel + 0.01), 0.96 s examples of 96 frames x 64 bands.
    """

    sample_rate: int = 16000
    win_seconds: float = 0.025
    hop_seconds: float = 0.010
    n_fft: int = 512
    n_mels: int = 64
    f_min: float = 125.0
    f_max: float = 7500.0
    log_offset: float = 0.01
    example_frames: int = 96  # 0.96 s at a 10 ms hop

    @property
    def win_length(self) -> int:
        return int(round(self.win_seconds * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    @property
    def example_seconds(self) -> float:
        return self.example_frames * self.hop_seconds


@dataclass(frozen=True)
class AudioSampling(Config):
    """``segments`` audio examples per video, aligned in time with the visual clips."""

    segments: int = 10

    def __post_init__(self) -> None:
        check_int("--segments", self.segments, 1)


@dataclass(frozen=True)
class ExtractConfig(Config):
    """Everything that determines the content of a feature store."""

    visual: str = "resnext3d-101"
    audio: str = "resnet50-audio"
    visual_weights: str | None = None
    audio_weights: str | None = None
    visual_weights_sha256: str | None = None
    audio_weights_sha256: str | None = None
    sampling: ClipSampling = field(default_factory=ClipSampling)
    audio_sampling: AudioSampling = field(default_factory=AudioSampling)
    logmel: LogMel = field(default_factory=LogMel)
    text_model: str = "default"
    prompt_template: str = "a video of a person {label}"
    precision: str = "fp32"  # of the backbones: fp32 (TF32 on CUDA), bf16, fp16, or auto (measured fastest)

    def __post_init__(self) -> None:
        check_choice("--precision", self.precision, PRECISIONS)

    def content_key(self) -> dict[str, Any]:
        """The fields that decide the numbers in the store (weight paths may move; their hashes may not)."""
        d = dataclasses.asdict(self)
        d.pop("visual_weights")
        d.pop("audio_weights")
        return d
