"""AV-Synth: small synthetic audio-visual corpora in the Kinetics-400 layout, where fusion is needed.

Easy (the default): each class is a pair (visual pattern, sound pattern). With C classes there are P = C/2
patterns of each kind; class 2i = (v_i, s_i) and class 2i+1 = (v_i, s_{(i+1) mod P}). Every visual pattern
and every sound is shared by exactly two classes, so one modality alone tops out at 50% top-1, while the
pair names the class. Hard: classes named by what is on screen while a sound plays, and by the order of two
such events (``hard.py``), so late fusion and mean pooling lose what they need. Patterns differ in
appearance (colour, shape, texture) and in pitch/timbre, which randomly initialised backbones separate
well; everything else (size, frame rate, sample rate, channels, duration, background, noise level) varies
from video to video like in a real corpus, and a few files are broken.
The class tables are in `tasks.py` and `hard.py`, the per-video plan in `plan.py`, the pictures and sounds
are drawn by `render.py`; this module writes the files.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files.outputs import Output, atomic, check_outputs, claim_folder, writing
from .avwrite import write_video
from .captions import caption, hard_caption
from .hard import BLOCK_SECONDS, HardClass, hard_class_table
from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS
from .plan import VideoSpec, plan_hard_videos, plan_videos
from .render import render_audio, render_frames
from .tasks import SynthClass, class_table

TASKS = ("easy", "hard")


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
    with atomic(path, "OUT", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_splits(out: Path, specs: list[VideoSpec], names: list[str]) -> None:
    """train.csv, validate.csv and test.csv (no label column), as Kinetics-400 lists them."""
    for split, name in (("train", "train.csv"), ("val", "validate.csv"), ("test", "test.csv")):
        rows = [[names[s.label], s.youtube_id, s.time_start, s.time_start + 10, s.split]
                for s in specs if s.split == split]
        header = ["label", "youtube_id", "time_start", "time_end", "split"]
        if split == "test":
            header, rows = header[1:], [r[1:] for r in rows]
        _write_csv(out / name, header, rows)


def _write_tables(out: Path, specs: list[VideoSpec], table: list[SynthClass], seed: int) -> None:
    """The split lists, captions.csv and classes.csv of the easy corpus."""
    _write_splits(out, specs, [c.name for c in table])
    captions = [[s.video_id, caption(table[s.label], np.random.default_rng([seed, s.index, 3]))] for s in specs]
    _write_csv(out / "captions.csv", ["video_id", "caption"], captions)
    _write_csv(out / "classes.csv", ["index", "name", "visual", "sound"],
               [[c.index, c.name, c.visual, c.sound] for c in table])


def _write_hard_tables(out: Path, specs: list[VideoSpec], table: list[HardClass], seed: int) -> None:
    """The split lists, captions.csv, classes.csv and timelines.csv (what each video shows when) of a hard
    corpus."""
    _write_splits(out, specs, [c.name for c in table])
    captions = [[s.video_id, hard_caption(table[s.label], np.random.default_rng([seed, s.index, 3]))]
                for s in specs]
    _write_csv(out / "captions.csv", ["video_id", "caption"], captions)
    _write_csv(out / "classes.csv", ["index", "name", "kind", "sound", "visuals"],
               [[c.index, c.name, c.kind, SOUND_PATTERNS[c.sound].key,
                 " ".join(VISUAL_PATTERNS[v].key for v in c.visuals)] for c in table])
    _write_csv(out / "timelines.csv", ["video_id", "block", "seconds", "visual", "sound"],
               [[s.video_id, b, BLOCK_SECONDS, VISUAL_PATTERNS[v].key, SOUND_PATTERNS[a].key if a >= 0 else ""]
                for s in specs for b, (v, a) in enumerate(s.timeline)])


def _encode_all(specs: list[VideoSpec], out: Path, workers: int) -> None:
    """Render and encode every video, the longest first, in ``workers`` processes (in-process when <= 1)."""
    jobs = [(s, str(out)) for s in sorted(specs, key=lambda s: -s.duration * s.fps * s.size[0] * s.size[1])]
    if workers <= 1:
        for job in jobs:
            _make_video(job)
        return
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(processes=min(workers, len(jobs))) as pool:
        for _ in pool.imap_unordered(_make_video, jobs, chunksize=1):
            pass


def synth(out: str | Path, videos: int = 200, classes: int | None = None, seed: int = 0, workers: int = 2,
          task: str = "easy") -> SynthSummary:
    """Write an AV-Synth corpus of ``videos`` clips to ``out`` (Kinetics layout).

    ``task='easy'`` (``classes`` classes, 8 by default) or ``'hard'`` (the 16 classes of ``hard.py``; it
    takes no ``classes``). Files are ``{out}/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4``; the same seed
    gives the same CSVs and the same decoded content. Encoding runs in ``workers`` processes.
    """
    if videos < 1:
        raise ValueError(f"videos must be at least 1; got {videos}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if task == "hard" and classes is not None:
        raise ValueError(f"the hard task has its own {len(hard_class_table())} classes; do not pass classes")
    started = time.perf_counter()
    out = Path(out)
    key = {"videos": videos, "classes": len(hard_class_table()) if task == "hard" else classes or 8, "seed": seed,
           "task": task}
    # a corpus folder of another command (a Kinetics copy: its CSVs) or another AV-Synth is never overwritten
    check_outputs([Output(out, "OUT", folder=True)], command="synth", key=key, legacy=("classes.csv", "captions.csv"))
    claim_folder(out, "synth", key, "OUT")
    with writing(out, "OUT"):  # a full disk, a read-only or too long path: one line
        return _write_corpus(out, videos, classes, seed, workers, task, started)


def _write_corpus(out: Path, videos: int, classes: int | None, seed: int, workers: int, task: str,
                  started: float) -> SynthSummary:
    for split in ("train", "val", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    if task == "hard":
        specs, n_classes = plan_hard_videos(videos, seed), len(hard_class_table())
        _write_hard_tables(out, specs, hard_class_table(), seed)
    else:
        n_classes = 8 if classes is None else classes
        specs = plan_videos(videos, n_classes, seed)
        _write_tables(out, specs, class_table(n_classes), seed)
    _encode_all(specs, out, workers)
    splits = {split: sum(s.split == split for s in specs) for split in ("train", "val", "test")}
    return SynthSummary(
        out=str(out), videos=videos, classes=n_classes, broken=sum(bool(s.broken) for s in specs),
        no_audio=sum(not s.has_audio for s in specs), splits=splits,
        broken_ids=tuple(s.video_id for s in specs if s.broken),
        no_audio_ids=tuple(s.video_id for s in specs if not s.has_audio), seconds=time.perf_counter() - started)
