"""Frozen, typed configuration of stage one; saved whole into every store as JSON."""

from __future__ import annotations

import dataclasses
import math
import string
from dataclasses import dataclass, field
from typing import Any

from cavnet.configs import Config, check_choice, check_int, check_number
from cavnet.errors import CavnetError

# 3D-ResNeXt (Hara et al., CVPR 2018): pixels 0-255 minus the ActivityNet mean, std 1.
RESNEXT_MEAN = (114.7748, 107.7354, 99.4750)
RESNEXT_STD = (1.0, 1.0, 1.0)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DECODERS = ("pyav", "torchcodec")  # torchcodec: the optional extra (cavnet[torchcodec]), NVDEC on CUDA workers
CLIP_EMBEDDINGS = ("projected", "pooled")
DB_AMIN = 1e-10  # librosa's power_to_db floor
MAX_CLIP_SIDE = 4096  # clips, segments, frames and pixels per side: a store row must stay allocatable


@dataclass(frozen=True)
class ClipSampling(Config):
    """How visual clips are cut from a video: ``clips`` clips of ``frames`` frames, spread uniformly,
    resized to short side ``short_side`` (or to exactly ``resize`` = (H, W) when set, as torchvision's
    video transforms do with a two-number size) and centre-cropped to ``size`` x ``size``. A backbone sees
    ``(pixel - mean) / std`` with pixels in 0-255."""

    clips: int = 10
    frames: int = 16
    short_side: int = 112
    size: int = 112
    mean: tuple[float, float, float] = RESNEXT_MEAN
    std: tuple[float, float, float] = RESNEXT_STD
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "short_side", "size"):
            check_int("--" + name.replace("_", "-"), getattr(self, name), 1, MAX_CLIP_SIDE)
        if self.resize is None and self.size > self.short_side:
            raise CavnetError(f"crop size {self.size} is larger than the short side {self.short_side}")


VIEW_CROPS = (1, 3)


@dataclass(frozen=True)
class SpatialViews(Config):
    """The spatial views of every clip a store holds: ``crops`` crops of the sampling's size along the long
    side of the resized frame (1: the centre; 3: start, centre and end, as ThreeCrop does in PySlowFast and
    mmaction2), and with ``flip`` a horizontally flipped copy of each. Views are ordered crops first, then
    their flips: view ``v`` is crop ``v % crops``, flipped when ``v >= crops``; the centre view is
    ``crops // 2``. The visual backbone runs once per view."""

    crops: int = 1
    flip: bool = False

    def __post_init__(self) -> None:
        if self.crops not in VIEW_CROPS:
            raise CavnetError(f"--views must be 1 or 3 (crops along the long side), not {self.crops!r}")

    @property
    def count(self) -> int:
        """Views per clip: ``crops``, twice that with ``flip``."""
        return self.crops * (2 if self.flip else 1)

    @property
    def centre(self) -> int:
        """The index of the centre, unflipped view."""
        return self.crops // 2


@dataclass(frozen=True)
class LogMel(Config):
    """Audio front end: 16 kHz mono, windowed log-mel spectrogram cut into fixed-length examples.

    The defaults are the VGGish recipe: 25 ms periodic-Hann window, 10 ms hop, 512-point FFT,
    64 HTK mel bands over 125-7500 Hz, log(mel + 0.01), 0.96 s examples of 96 frames x 64 bands.

    ``mel_scale``: ``"htk"`` builds the AudioSet release's matrix (``mel_features.py``: HTK mel scale, each
    triangle linear in mel, DC bin zeroed); ``"slaney"`` builds librosa's default (Slaney mel scale,
    triangles linear in Hz, area-normalised). ``power``: 1 magnitude, 2 power spectrum. ``log``:
    ``"offset"`` is log(mel + log_offset), ``"db"`` is 10 log10(max(mel, 1e-10)) (librosa's power_to_db
    with ref 1 and no top_db). ``center``: frame ``f`` is centred on sample ``f * hop`` (reflect padding,
    librosa style) instead of starting there.
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
    mel_scale: str = "htk"
    power: float = 1.0
    log: str = "offset"
    center: bool = False

    def __post_init__(self) -> None:
        if self.mel_scale not in ("htk", "slaney") or self.log not in ("offset", "db"):
            raise ValueError(f"LogMel: mel_scale must be htk|slaney and log offset|db, got "
                             f"{self.mel_scale!r}, {self.log!r}")

    @property
    def win_length(self) -> int:
        return int(round(self.win_seconds * self.sample_rate))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    @property
    def example_seconds(self) -> float:
        return self.example_frames * self.hop_seconds

    @property
    def frame_start(self) -> float:
        """Where frame 0's window starts, in samples from the start of the waveform (negative: centred)."""
        return -self.win_length / 2.0 if self.center else 0.0

    @property
    def silence(self) -> float:
        """The value digital silence (all-zero audio) takes in this front end."""
        return math.log(self.log_offset) if self.log == "offset" else 10.0 * math.log10(DB_AMIN)


@dataclass(frozen=True)
class AudioSampling(Config):
    """``segments`` audio examples per video, aligned in time with the visual clips."""

    segments: int = 10

    def __post_init__(self) -> None:
        check_int("--segments", self.segments, 1, MAX_CLIP_SIDE)


@dataclass(frozen=True)
class EncoderConfig(Config):
    """How a foundation encoder from a Hugging Face folder runs (cavnet.extract.backbones.hf); unused by
    cavnet's own backbones.

    Options: ``frame_subset``: an image encoder (CLIP) sees K evenly spaced frames of each T-frame clip
    (0: all T); ``clip_embedding``: CLIP's frame embedding, ``projected`` (the image embedding its text
    side is compared with) or ``pooled`` (the class token after the last LayerNorm, before the
    projection); ``audio_window``: seconds of audio per segment for AST / CLAP (0: the model's own input
    length, 10.24 s / 10 s).

    Recorded by extract, never set by hand: ``visual_dim`` / ``audio_dim`` the feature widths the folders'
    configs give (0: the registry's), ``visual_arch`` / ``audio_arch`` the architecture in words,
    ``extractor`` the audio feature extractor's settings (its ``preprocessor_config.json`` as JSON), which
    every decode process rebuilds the extractor from.
    """

    frame_subset: int = 0
    clip_embedding: str = "projected"
    audio_window: float = 0.0
    visual_dim: int = 0
    audio_dim: int = 0
    visual_arch: str = ""
    audio_arch: str = ""
    extractor: str = ""

    def __post_init__(self) -> None:
        check_int("--frame-subset", self.frame_subset, 0, MAX_CLIP_SIDE)
        check_choice("--clip-embedding", self.clip_embedding, CLIP_EMBEDDINGS)
        check_number("--audio-window", self.audio_window, 0.0, maximum=3600.0)


def check_template(what: str, template: str) -> None:
    """A label prompt: text with ``{label}`` and no other field (``{{`` and ``}}`` are literal braces)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise CavnetError(f"{what} {template!r} is not a template: {exc} (write a literal brace as {{{{ or }}}})") \
            from None
    if "label" not in fields or set(fields) != {"label"}:
        others = sorted(set(fields) - {"label"})
        raise CavnetError(f"{what} {template!r} must contain {{label}}" + (
            f" and no other field ({', '.join('{' + f + '}' for f in others)})" if others else ""))


@dataclass(frozen=True)
class ExtractConfig(Config):
    """Everything that determines the content of a feature store."""

    visual: str = "resnext3d-101"
    audio: str = "resnet50-audio"
    visual_weights: str | None = None
    audio_weights: str | None = None
    visual_weights_sha256: str | None = None
    audio_weights_sha256: str | None = None
    # What the weight files are (e.g. "torchvision R2Plus1D_18_Weights.KINETICS400_V1"); None with no file.
    visual_weights_name: str | None = None
    audio_weights_name: str | None = None
    sampling: ClipSampling = field(default_factory=ClipSampling)
    audio_sampling: AudioSampling = field(default_factory=AudioSampling)
    logmel: LogMel = field(default_factory=LogMel)
    text_model: str = "default"
    prompt_template: str = "a video of a person {label}"
    precision: str = "fp32"  # of the backbones: fp32 (TF32 on CUDA), bf16, fp16, or auto (measured fastest)
    decoder: str = "pyav"  # who decodes the videos (the clips differ within a tolerance, not bit for bit)
    # Foundation encoders (CLIP, VideoMAE, AST, CLAP): their options and what their folders said. With an
    # audio feature extractor (encoder.extractor), ``logmel`` holds only its sample rate and example shape.
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Spatial views of each clip (--views, --flip); stores from before format 2 have one (the centre crop).
    views: SpatialViews = field(default_factory=SpatialViews)

    def __post_init__(self) -> None:
        check_choice("--precision", self.precision, PRECISIONS)
        check_choice("--decoder", self.decoder, DECODERS)
        check_template("--prompt", self.prompt_template)
        if self.views.count > 1 and self.decoder != "pyav":
            raise CavnetError(f"--views {self.views.crops}{' --flip' if self.views.flip else ''} needs the pyav "
                              f"decoder, not {self.decoder}")

    def content_key(self) -> dict[str, Any]:
        """The fields that decide the numbers in the store (weight files may move or be renamed; their
        hashes may not)."""
        d = dataclasses.asdict(self)
        for key in ("visual_weights", "audio_weights", "visual_weights_name", "audio_weights_name"):
            d.pop(key)
        return d


@dataclass(frozen=True)
class PrepareConfig(Config):
    """How ``cavnet prepare`` re-encodes. short_side: the shorter side of the output frames (never
    upscaled; 256 is what Kinetics users train from, 128 is enough for 112-pixel crops). keyframe_seconds: the
    longest stretch between keyframes. crf, preset: x264's quality (lower is better) and speed. audio_bitrate:
    bits/s of the AAC written when the source's audio codec cannot be copied into MP4."""

    short_side: int = 256
    keyframe_seconds: float = 1.0
    crf: int = 23
    preset: str = "veryfast"
    audio_bitrate: int = 128000

    def __post_init__(self) -> None:
        check_int("--short-side", self.short_side, 16, 8192)
        check_int("--crf", self.crf, 0)
        check_int("--audio-bitrate", self.audio_bitrate, 8000, 2_000_000)
        check_choice("--preset", self.preset, X264_PRESETS)
        check_number("--keyframe-seconds", self.keyframe_seconds, 0.0, positive=True, below=60.0)
        if self.crf > 51:
            raise CavnetError(f"--crf must be an integer in 0..51 (x264), not {self.crf!r}")
