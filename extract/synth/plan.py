"""The per-video plan of an AV-Synth corpus (easy or hard): ids, splits, labels, sizes, rates, silent and broken
files, and for a hard video its timeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS
from .hard import DURATION, hard_class_table, sample_timeline
from .tasks import class_table

RESOLUTIONS = ((160, 120), (176, 144), (200, 150), (240, 180), (320, 240), (144, 192))  # (W, H)
FRAME_RATES = (15, 24, 25, 30)
HARD_RESOLUTIONS = ((160, 120), (176, 144), (144, 192))  # the smaller half: 8 s videos, written in bulk
HARD_FRAME_RATES = (24, 25, 30)  # a 16-frame clip fits in a 1 s step
HARD_SAMPLE_RATES = (8000, 16000, 22050)
SAMPLE_RATES = (8000, 16000, 22050, 44100, 48000)
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video, picklable for the encoding pool."""

    index: int
    youtube_id: str
    time_start: int
    split: str
    label: int
    visual: int
    sound: int
    size: tuple[int, int]  # (W, H)
    fps: int
    duration: float
    sample_rate: int
    channels: int
    has_audio: bool
    broken: str  # "", "empty" or "truncated"
    seed: int
    timeline: tuple[tuple[int, int], ...] = ()  # hard corpus: (visual, sound or -1) per equal block; easy: ()

    @property
    def video_id(self) -> str:
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_start + 10:06d}"


def _youtube_ids(rng: np.random.Generator, n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        candidate = "".join(rng.choice(_ID_ALPHABET, size=11))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def _split_labels(videos: int, classes: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """``(split, label)`` per video: ~70/20/10 splits, labels round robin over a shuffle per split."""
    n_train = int(round(videos * 0.7))
    n_val = min(videos - n_train, int(round(videos * 0.2)))
    out = []
    for split, n in (("train", n_train), ("val", n_val), ("test", videos - n_train - n_val)):
        order = rng.permutation(classes)
        out += [(split, int(order[j % classes])) for j in range(n)]
    return out


def _odd_files(videos: int, rng: np.random.Generator, silent_share: float) -> tuple[dict[int, str], set[int]]:
    """Which videos are broken (``{index: "empty" | "truncated"}``) and which have no audio track."""
    n_broken = max(2, round(0.02 * videos)) if videos >= 20 else 0
    n_silent = round(silent_share * videos)
    odd = rng.permutation(videos)
    broken = {int(i): ("empty", "truncated")[k % 2] for k, i in enumerate(odd[:n_broken])}
    return broken, {int(i) for i in odd[n_broken:n_broken + n_silent]}


def plan_videos(videos: int, classes: int, seed: int) -> list[VideoSpec]:
    """The deterministic per-video plan for a seed; independent of the number of workers."""
    rng = np.random.default_rng(seed)
    table = class_table(classes)
    ids = _youtube_ids(rng, videos)
    labels = _split_labels(videos, classes, rng)
    broken, silent = _odd_files(videos, rng, 0.05)
    specs = []
    for i, (split, label) in enumerate(labels):
        r = np.random.default_rng([seed, i, 0])
        cls = table[label]
        specs.append(VideoSpec(
            index=i, youtube_id=ids[i], time_start=int(r.integers(0, 300)), split=split, label=label,
            visual=[p.key for p in VISUAL_PATTERNS].index(cls.visual),
            sound=[p.key for p in SOUND_PATTERNS].index(cls.sound),
            size=RESOLUTIONS[r.integers(len(RESOLUTIONS))], fps=int(r.choice(FRAME_RATES)),
            duration=round(float(r.uniform(2.0, 10.0)), 1), sample_rate=int(r.choice(SAMPLE_RATES)),
            channels=int(r.integers(1, 3)), has_audio=i not in silent, broken=broken.get(i, ""), seed=seed))
    return specs


def plan_hard_videos(videos: int, seed: int) -> list[VideoSpec]:
    """The plan of an AV-Synth hard corpus: each video an 8 s timeline drawn uniformly for its class.

    Frame rates are those at which a 16-frame clip fits in one 1 s step (24-30 fps); sizes and sample rates
    are the cheaper part of the easy corpus's ranges, so that the several hundred videos the hard classes
    need are written in about a minute on two cores. Only 2% of the videos lose their audio track (5% in the
    easy corpus): without it a hard video cannot be named.
    """
    rng = np.random.default_rng(seed)
    table = hard_class_table()
    ids = _youtube_ids(rng, videos)
    labels = _split_labels(videos, len(table), rng)
    broken, silent = _odd_files(videos, rng, 0.02)
    specs = []
    for i, (split, label) in enumerate(labels):
        r = np.random.default_rng([seed, i, 0])
        cls = table[label]
        specs.append(VideoSpec(
            index=i, youtube_id=ids[i], time_start=int(r.integers(0, 300)), split=split, label=label,
            visual=cls.visuals[0], sound=cls.sound, size=HARD_RESOLUTIONS[r.integers(len(HARD_RESOLUTIONS))],
            fps=int(r.choice(HARD_FRAME_RATES)), duration=DURATION, sample_rate=int(r.choice(HARD_SAMPLE_RATES)),
            channels=int(r.integers(1, 3)), has_audio=i not in silent, broken=broken.get(i, ""), seed=seed,
            timeline=sample_timeline(cls, np.random.default_rng([seed, i, 5]))))
    return specs
