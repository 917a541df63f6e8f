"""AV-Synth: the class design caps each single modality at 50%, and the corpus reads back as Kinetics."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from cavnet.extract.datasets import read_k400
from cavnet.extract.synth import (SOUND_PATTERNS, VISUAL_PATTERNS, SynthClass, SynthSummary, class_table,
                                  modality_cap, synth)

VIDEOS, CLASSES, SEED = 24, 4, 7


@pytest.mark.parametrize("classes", [4, 6, 8, 12, 16])
def test_each_modality_is_capped_at_half(classes: int) -> None:
    table = class_table(classes)
    assert [c.index for c in table] == list(range(classes))
    assert modality_cap(table, "visual") == 0.5
    assert modality_cap(table, "sound") == 0.5
    assert modality_cap(table, "pair") == 1.0
    assert len({(c.visual, c.sound) for c in table}) == classes  # the pair names the class
    assert set(Counter(c.visual for c in table).values()) == {2}
    assert set(Counter(c.sound for c in table).values()) == {2}
    assert len({c.name for c in table}) == classes


def test_modality_cap_is_computed_not_constant() -> None:
    distinct = [SynthClass(i, f"c{i}", f"v{i}", "same") for i in range(4)]
    assert modality_cap(distinct, "visual") == 1.0
    assert modality_cap(distinct, "sound") == 0.25
    with pytest.raises(ValueError):
        modality_cap(distinct, "text")  # type: ignore[arg-type]


@pytest.mark.parametrize("classes", [2, 5, 18])
def test_class_table_rejects_bad_counts(classes: int) -> None:
    with pytest.raises(ValueError, match="even"):
        class_table(classes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("avsynth")
    return out, synth(out, videos=VIDEOS, classes=CLASSES, seed=SEED, workers=2)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_synth_reads_back_as_kinetics(corpus: tuple[Path, SynthSummary]) -> None:
    out, summary = corpus
    assert summary.videos == VIDEOS and summary.splits == {"train": 17, "val": 5, "test": 2}
    m = read_k400(out)
    table = class_table(CLASSES)
    assert m.classes == tuple(sorted(c.name for c in table))
    assert len(m) == VIDEOS and all(r.exists for r in m.rows)
    assert Counter(r.split for r in m.rows) == summary.splits
    assert all(Path(r.path).parent.name == r.split for r in m.rows)
    with open(out / "test.csv") as f:
        assert f.readline().strip() == "youtube_id,time_start,time_end,split"
    assert all(r.label == -1 for r in m.rows if r.split == "test")
    train = [r for r in m.rows if r.split == "train"]
    counts = Counter(r.label for r in train)
    assert len(counts) == CLASSES and max(counts.values()) - min(counts.values()) <= 1  # balanced
    classes_csv = _read_csv(out / "classes.csv")
    assert [(int(r["index"]), r["name"], r["visual"], r["sound"]) for r in classes_csv] == \
        [(c.index, c.name, c.visual, c.sound) for c in table]
    labelled = {r["youtube_id"]: r["label"] for n in ("train.csv", "validate.csv") for r in _read_csv(out / n)}
    assert all(m.classes[r.label] == labelled[r.video_id[:11]] for r in m.rows if r.split != "test")
    assert all(r.text for r in m.rows)  # captions.csv is attached


def test_synth_broken_and_silent_files(corpus: tuple[Path, SynthSummary]) -> None:
    out, summary = corpus
    rows = {r.video_id: r for r in read_k400(out).rows}
    assert summary.broken == len(summary.broken_ids) == 2 and summary.no_audio == len(summary.no_audio_ids) == 1
    sizes = sorted(Path(rows[v].path).stat().st_size for v in summary.broken_ids)
    assert sizes[0] == 0 and sizes[1] > 0
    truncated = next(rows[v].path for v in summary.broken_ids if Path(rows[v].path).stat().st_size)
    decoded, declared = 0, -1
    with pytest.raises(av.error.FFmpegError):
        with av.open(truncated) as container:
            declared = container.streams.video[0].frames
            for _ in container.decode(video=0):
                decoded += 1
    assert decoded < declared
    with av.open(rows[summary.no_audio_ids[0]].path) as container:
        assert not container.streams.audio and container.streams.video


def _decode(path: str, frames: int = 3) -> tuple[np.ndarray, np.ndarray | None]:
    """First ``frames`` frames ``(F, H, W, 3)`` uint8 and the audio ``(channels, samples)`` or None."""
    with av.open(path) as container:
        video = np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(frames), container.decode(video=0))])
    with av.open(path) as container:
        audio = (np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
                 if container.streams.audio else None)
    return video, audio


def test_synth_is_deterministic(corpus: tuple[Path, SynthSummary], tmp_path: Path) -> None:
    out, summary = corpus
    again = synth(tmp_path, videos=VIDEOS, classes=CLASSES, seed=SEED, workers=1)
    assert again.broken_ids == summary.broken_ids and again.no_audio_ids == summary.no_audio_ids
    for name in ("train.csv", "validate.csv", "test.csv", "captions.csv", "classes.csv"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    good = [r for r in read_k400(out).rows if r.video_id not in summary.broken_ids][:3]
    for row in good:
        (v1, a1), (v2, a2) = _decode(row.path), _decode(str(tmp_path / row.split / Path(row.path).name))
        assert np.array_equal(v1, v2)
        assert (a1 is None and a2 is None) or np.array_equal(a1, a2)
    other = synth(tmp_path / "other", videos=4, classes=CLASSES, seed=SEED + 1, workers=1)
    assert (tmp_path / "other" / "train.csv").read_bytes() != (out / "train.csv").read_bytes()
    assert other.videos == 4 and other.broken == 0


def test_synth_frames_show_the_class_colour(corpus: tuple[Path, SynthSummary]) -> None:
    out, summary = corpus
    table = class_table(CLASSES)
    palette = np.array([p.rgb for p in VISUAL_PATTERNS], float)
    rows = [r for r in read_k400(out).rows if r.label >= 0 and r.video_id not in summary.broken_ids]
    seen = set()
    for row in rows:
        cls = next(c for c in table if c.name == row.label_name)
        if cls.visual in seen:
            continue
        seen.add(cls.visual)
        frames, _ = _decode(row.path)
        pixels = frames.reshape(-1, 3).astype(float)
        dist = np.linalg.norm(pixels[:, None] - palette[None], axis=-1)  # (pixels, patterns)
        near = Counter(dist.argmin(1)[dist.min(1) < 60].tolist())
        expected = [p.key for p in VISUAL_PATTERNS].index(cls.visual)
        assert near.most_common(1)[0][0] == expected, (row.video_id, cls.visual, near)
        assert near[expected] > 0.03 * len(pixels)
    assert len(seen) == CLASSES // 2


def test_synth_sounds_differ_by_pitch(corpus: tuple[Path, SynthSummary]) -> None:
    """The two sounds of the 4-class corpus (low hum, high whistle) put their energy in different bands."""
    out, _ = corpus
    table = {c.name: c for c in class_table(CLASSES)}
    ratios: dict[str, list[float]] = {}
    for row in read_k400(out, splits=["train"]).rows:
        try:
            _, audio = _decode(row.path, frames=1)
        except av.error.FFmpegError:
            continue
        if audio is None:
            continue
        with av.open(row.path) as container:
            rate = container.streams.audio[0].rate
        power = np.abs(np.fft.rfft(audio.mean(0))) ** 2
        freqs = np.fft.rfftfreq(audio.shape[1], 1 / rate)
        low, high = (power[(freqs > lo) & (freqs < hi)].sum() for lo, hi in ((150, 700), (1500, 2500)))
        ratios.setdefault(table[row.label_name].sound, []).append(float(np.log10(low / high)))
    assert {SOUND_PATTERNS[0].key, SOUND_PATTERNS[1].key} == set(ratios)
    assert min(ratios["low_hum"]) > 1 and max(ratios["high_whistle"]) < -1  # > 10x either way
