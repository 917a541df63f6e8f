"""Frozen, typed configuration of stage one; saved whole into every store as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# 3D-ResNeXt (Hara et al., CVPR 2018): pixels 0-255 minus the ActivityNet mean, std 1.
RESNEXT_MEAN = (114.7748, 107.7354, 99.4750)
RESNEXT_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ClipSampling:
    """How visual clips are cut from a video: ``clips`` clips of ``frames`` frames, spread uniformly,
    resized to short side ``short_side`` and centre-cropped to ``size`` x ``size``."""

    clips: int = 10
    frames: int = 16
    short_side: int = 112
    size: int = 112
    mean: tuple[float, float, float] = RESNEXT_MEAN
    std: tuple[float, float, float] = RESNEXT_STD


@dataclass(frozen=True)
class LogMel:
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
class AudioSampling:
    """``segments`` audio examples per video, aligned in time with the visual clips."""

    segments: int = 10


@dataclass(frozen=True)
class ExtractConfig:
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

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExtractConfig":
        d = dict(d)
        s = dict(d.pop("sampling", {}))
        for key in ("mean", "std"):
            if key in s:
                s[key] = tuple(s[key])
        return cls(
            sampling=ClipSampling(**s),
            audio_sampling=AudioSampling(**d.pop("audio_sampling", {})),
            logmel=LogMel(**d.pop("logmel", {})),
            **d,
        )

    @classmethod
    def from_json(cls, text: str) -> "ExtractConfig":
        return cls.from_dict(json.loads(text))

    def content_key(self) -> dict[str, Any]:
        """The fields that decide the numbers in the store (weight paths may move; their hashes may not)."""
        d = dataclasses.asdict(self)
        d.pop("visual_weights")
        d.pop("audio_weights")
        return d


@dataclass(frozen=True)
class RunOptions:
    """How an extraction runs; does not change the numbers written, so it is not part of the store key."""

    shard_size: int = 64
    workers: int = 2
    scheduler: str | None = None
    decode_workers: int = 0
    device: str = "auto"
    batch_clips: int = 64
    limit: int | None = None
    window: int = 0  # in-flight shards; 0 means 2 x workers
