"""AV-Synth: a small synthetic audio-visual corpus in the Kinetics-400 layout, where fusion is needed.

Each class is a pair (visual pattern, sound pattern). With C classes there are P = C/2 patterns of each
kind; class 2i = (v_i, s_i) and class 2i+1 = (v_i, s_{(i+1) mod P}). Every visual pattern and every sound
is shared by exactly two classes, so one modality alone tops out at 50% top-1, while the pair names the
class. Patterns differ in appearance (colour, shape, texture) and in pitch/timbre, which randomly
initialised backbones separate well; everything else (size, frame rate, sample rate, channels, duration,
background, noise level) varies from video to video like in a real corpus, and a few files are broken.
The pictures and sounds themselves are drawn by `synth_render`.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .media.avwrite import write_video


@dataclass(frozen=True)
class VisualPattern:
    """A coloured shape or texture: ``rgb`` is its main colour, ``synonyms`` are caption phrasings."""

    key: str
    name: str
    rgb: tuple[int, int, int]
    shape: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class SoundPattern:
    """A sound with a distinct pitch/timbre; ``name`` reads after "with", e.g. "a low hum"."""

    key: str
    name: str
    kind: str
    synonyms: tuple[str, ...]


VISUAL_PATTERNS: tuple[VisualPattern, ...] = (
    VisualPattern("red_square", "red square", (220, 40, 40), "square",
                  ("a red square", "a red box", "a crimson block")),
    VisualPattern("blue_disc", "blue disc", (40, 70, 230), "disc",
                  ("a blue disc", "a blue circle", "a blue ball")),
    VisualPattern("green_stripes", "green stripes", (40, 200, 60), "stripes",
                  ("green stripes", "a striped green patch", "green lines")),
    VisualPattern("yellow_checkerboard", "yellow checkerboard", (240, 220, 40), "checkerboard",
                  ("a yellow checkerboard", "a yellow checkered tile", "a yellow chessboard")),
    VisualPattern("magenta_triangle", "magenta triangle", (215, 45, 205), "triangle",
                  ("a magenta triangle", "a pink triangle", "a purple wedge")),
    VisualPattern("cyan_ring", "cyan ring", (40, 215, 225), "ring",
                  ("a cyan ring", "a turquoise ring", "a light blue hoop")),
    VisualPattern("white_cross", "white cross", (245, 245, 245), "cross",
                  ("a white cross", "a white plus sign", "a pale cross")),
    VisualPattern("orange_dots", "orange dots", (250, 140, 25), "dots",
                  ("orange dots", "orange polka dots", "a few orange spots")),
)

SOUND_PATTERNS: tuple[SoundPattern, ...] = (
    SoundPattern("low_hum", "a low hum", "hum", ("a low hum", "a deep drone", "a humming noise")),
    SoundPattern("high_whistle", "a high whistle", "whistle",
                 ("a high whistle", "a shrill whistle", "a high pitched whistling")),
    SoundPattern("beeping", "a beeping tone", "beep", ("a beeping tone", "beeps", "a pulsing beep")),
    SoundPattern("rising_chirp", "a rising chirp", "chirp", ("a rising chirp", "a sweeping tone", "chirps")),
    SoundPattern("static_bursts", "bursts of static", "bursts",
                 ("bursts of static", "crackling noise", "white noise bursts")),
    SoundPattern("buzzing", "a buzzing sound", "buzz", ("a buzzing sound", "a buzz", "an electric buzz")),
    SoundPattern("knocking", "a knocking sound", "knock", ("a knocking sound", "knocks", "tapping")),
    SoundPattern("siren", "a two-tone siren", "siren", ("a two-tone siren", "a siren", "a wailing alarm")),
)

MAX_CLASSES = 2 * min(len(VISUAL_PATTERNS), len(SOUND_PATTERNS))
RESOLUTIONS = ((160, 120), (176, 144), (200, 150), (240, 180), (320, 240), (144, 192))  # (W, H)
FRAME_RATES = (15, 24, 25, 30)
SAMPLE_RATES = (8000, 16000, 22050, 44100, 48000)
SPLIT_SHARES = (("train", 0.7), ("val", 0.2), ("test", 0.1))
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))


@dataclass(frozen=True)
class SynthClass:
    """One AV-Synth class: ``visual`` and ``sound`` are pattern keys."""

    index: int
    name: str
    visual: str
    sound: str


def class_table(classes: int) -> list[SynthClass]:
    """The C classes: class 2i = (v_i, s_i), class 2i+1 = (v_i, s_{(i+1) mod P}), P = C/2."""
    if classes < 4 or classes % 2 or classes > MAX_CLASSES:
        raise ValueError(f"classes must be even, between 4 and {MAX_CLASSES}; got {classes}")
    p = classes // 2
    table = []
    for c in range(classes):
        v, s = VISUAL_PATTERNS[c // 2], SOUND_PATTERNS[(c // 2 + c % 2) % p]
        table.append(SynthClass(index=c, name=f"{v.name} with {s.name}", visual=v.key, sound=s.key))
    return table


def modality_cap(table: list[SynthClass], modality: Literal["visual", "sound", "pair"]) -> float:
    """Best top-1 accuracy of a classifier that sees only ``modality``, for uniform class priors:
    the sum over observed patterns of the largest class share within the pattern, over the classes."""
    if modality not in ("visual", "sound", "pair"):
        raise ValueError(f"modality must be visual, sound or pair; got {modality!r}")
    counts: dict[object, dict[int, int]] = {}
    for c in table:
        key = (c.visual, c.sound) if modality == "pair" else getattr(c, modality)
        counts.setdefault(key, {}).setdefault(c.index, 0)
        counts[key][c.index] += 1
    return sum(max(per_class.values()) for per_class in counts.values()) / len(table)


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

    @property
    def video_id(self) -> str:
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_start + 10:06d}"


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synth` wrote: counts in total and per split, and the ids of the odd videos."""

    out: str
    videos: int
    classes: int
    broken: int
    no_audio: int
    splits: dict[str, int] = field(default_factory=dict)
    broken_ids: tuple[str, ...] = ()
    no_audio_ids: tuple[str, ...] = ()
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- captions

_FILLERS = ("", "", "lol", "so yeah", "idk", "must watch", "part 2", "(HD)", "omg", "random clip", "wow")
_BOTH = ("{v} moving around while you hear {s} {f}", "{f} {v} and {s}", "video of {v} with {s} {f}",
         "{s} ... and {v}", "{v}, sound: {s} {f}", "i recorded {v} with {s} in the background")
_VISUAL_ONLY = ("look at {v} {f}", "{f} just {v} bouncing around", "{v} on screen")
_SOUND_ONLY = ("listen to {s} {f}", "{f} turn the volume up: {s}", "{s} the whole time")


def caption(cls: SynthClass, rng: np.random.Generator) -> str:
    """A noisy free-text caption naming the pair (70%), only the visual (15%) or only the sound (15%)."""
    v = next(p for p in VISUAL_PATTERNS if p.key == cls.visual)
    s = next(p for p in SOUND_PATTERNS if p.key == cls.sound)
    u = rng.random()
    templates = _BOTH if u < 0.7 else _VISUAL_ONLY if u < 0.85 else _SOUND_ONLY
    text = str(rng.choice(templates)).format(v=rng.choice(v.synonyms), s=rng.choice(s.synonyms),
                                             f=rng.choice(_FILLERS))
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------ the plan

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


def _plan(videos: int, classes: int, seed: int) -> list[VideoSpec]:
    """The deterministic per-video plan for a seed; independent of the number of workers."""
    rng = np.random.default_rng(seed)
    table = class_table(classes)
    ids = _youtube_ids(rng, videos)
    labels = _split_labels(videos, classes, rng)
    n_broken = max(2, round(0.02 * videos)) if videos >= 20 else 0
    n_silent = round(0.05 * videos)
    odd = rng.permutation(videos)
    broken = {int(i): ("empty", "truncated")[k % 2] for k, i in enumerate(odd[:n_broken])}
    silent = {int(i) for i in odd[n_broken:n_broken + n_silent]}
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


# ---------------------------------------------------------------------------------------- the files

def _truncate(path: Path, keep: float = 0.55) -> None:
    """Move the index to the front (so the file still opens and claims its full length), then cut it."""
    import av

    moved = path.with_suffix(".tmp.mp4")
    with av.open(str(path)) as src, av.open(str(moved), "w", options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = moved.read_bytes()
    moved.unlink()
    path.write_bytes(data[:int(len(data) * keep)])


def _make_video(job: tuple[VideoSpec, str]) -> str:
    """Render, encode and (for broken ones) damage one video; returns its id."""
    from cavnet.extract.synth_render import render_audio, render_frames  # it imports this module

    spec, out = job
    path = Path(out) / spec.split / f"{spec.video_id}.mp4"
    if spec.broken == "empty":
        path.write_bytes(b"")
        return spec.video_id
    audio = render_audio(spec) if spec.has_audio else None
    write_video(path, render_frames(spec), spec.fps, audio, spec.sample_rate)
    if spec.broken == "truncated":
        _truncate(path)
    return spec.video_id


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(out: Path, specs: list[VideoSpec], table: list[SynthClass], seed: int) -> None:
    """train.csv, validate.csv, test.csv (no label column), captions.csv and classes.csv."""
    for split, name in (("train", "train.csv"), ("val", "validate.csv"), ("test", "test.csv")):
        rows = [[table[s.label].name, s.youtube_id, s.time_start, s.time_start + 10, s.split]
                for s in specs if s.split == split]
        header = ["label", "youtube_id", "time_start", "time_end", "split"]
        if split == "test":
            header, rows = header[1:], [r[1:] for r in rows]
        _write_csv(out / name, header, rows)
    captions = [[s.video_id, caption(table[s.label], np.random.default_rng([seed, s.index, 3]))] for s in specs]
    _write_csv(out / "captions.csv", ["video_id", "caption"], captions)
    _write_csv(out / "classes.csv", ["index", "name", "visual", "sound"],
               [[c.index, c.name, c.visual, c.sound] for c in table])


def synth(out: str | Path, videos: int = 200, classes: int = 8, seed: int = 0, workers: int = 2) -> SynthSummary:
    """Write an AV-Synth corpus of ``videos`` clips and ``classes`` classes to ``out`` (Kinetics layout).

    Files are ``{out}/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4``; the same seed gives the same CSVs
    and the same decoded content. Encoding runs in ``workers`` processes (in-process when ``workers <= 1``).
    """
    if videos < 1:
        raise ValueError(f"videos must be at least 1; got {videos}")
    started = time.perf_counter()
    out = Path(out)
    specs = _plan(videos, classes, seed)
    for split in ("train", "val", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    _write_tables(out, specs, class_table(classes), seed)
    jobs = [(s, str(out)) for s in sorted(specs, key=lambda s: -s.duration * s.fps * s.size[0] * s.size[1])]
    if workers <= 1:
        for job in jobs:
            _make_video(job)
    else:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(processes=min(workers, len(jobs))) as pool:
            for _ in pool.imap_unordered(_make_video, jobs, chunksize=1):
                pass
    splits = {split: sum(s.split == split for s in specs) for split in ("train", "val", "test")}
    return SynthSummary(
        out=str(out), videos=videos, classes=classes, broken=sum(bool(s.broken) for s in specs),
        no_audio=sum(not s.has_audio for s in specs), splits=splits,
        broken_ids=tuple(s.video_id for s in specs if s.broken),
        no_audio_ids=tuple(s.video_id for s in specs if not s.has_audio), seconds=time.perf_counter() - started)
