"""AV-Synth hard: the class table, its timelines, the accuracy caps computed from them, and the files."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from cavnet.extract.datasets import read_k400
from cavnet.extract.synth import synth
from cavnet.extract.synth.caps import view_cap
from cavnet.extract.synth.hard import (BLOCK_SECONDS, BLOCKS, ORDER_PAIRS, SILENT, SOUNDS, TARGETS, HardClass,
                                       hard_class_table, sample_timeline, timelines)
from cavnet.extract.synth.patterns import SOUND_PATTERNS, VISUAL_PATTERNS

TABLE = hard_class_table()
PATTERNS = len(VISUAL_PATTERNS)


def test_class_table_has_sync_and_order_classes_with_distinct_names():
    assert [c.index for c in TABLE] == list(range(len(TABLE)))
    kinds = Counter(c.kind for c in TABLE)
    assert kinds == {"sync": len(TARGETS) * len(SOUNDS), "order": 2 * len(ORDER_PAIRS) * len(SOUNDS)}
    assert len({c.name for c in TABLE}) == len(TABLE)
    orders = {(c.sound, c.visuals) for c in TABLE if c.kind == "order"}
    assert all((s, v[::-1]) in orders for s, v in orders)  # each pair in both orders


@pytest.mark.parametrize("cls", TABLE, ids=lambda c: c.name)
def test_timelines_show_the_class_while_it_sounds_and_distractors_while_silent(cls: HardClass):
    options = timelines(cls)
    k = len(cls.visuals)
    assert len(options) == math.comb(BLOCKS, k) * math.perm(PATTERNS - k, BLOCKS - k)
    assert len(set(options)) == len(options)
    for t in options:
        assert len(t) == BLOCKS and len({v for v, _ in t}) == BLOCKS  # each pattern in one block only
        assert tuple(v for v, s in t if s != SILENT) == cls.visuals  # in time order
        assert {s for _, s in t if s != SILENT} == {cls.sound}
        assert not {v for v, s in t if s == SILENT} & set(cls.visuals)
    rng = np.random.default_rng(0)
    assert all(sample_timeline(cls, rng) in options for _ in range(5))


def _hypergeometric(k: int, draws: int, good: int, total: int) -> float:
    return math.comb(good, k) * math.comb(total - good, draws - k) / math.comb(total, draws)


def test_caps_follow_from_the_design():
    """The caps against closed forms derived by hand from the design (not from the enumeration)."""
    assert view_cap(TABLE, "timeline") == 1.0
    # audio: the sound and how many blocks play it give the sound and the kind; 4 classes remain
    assert view_cap(TABLE, "audio") == pytest.approx(1 / len(TARGETS))
    # pooled, sync (p, s): p is one of the target patterns on screen; the 3 distractors are drawn from the
    # other 7 patterns, 3 of them targets: E[1 / (1 + targets among the distractors)]
    others, other_targets, free = PATTERNS - 1, len(TARGETS) - 1, BLOCKS - 1
    sync = sum(_hypergeometric(k, free, other_targets, others) / (1 + k) for k in range(free + 1))
    assert view_cap(TABLE, "pooled", ("sync",)) == pytest.approx(sync)
    # pooled, order (p, q, s): the order is lost (1/2), and a quarter when the other pair shows up too
    both = 1 / math.comb(PATTERNS - 2, BLOCKS - 2)
    assert view_cap(TABLE, "pooled", ("order",)) == pytest.approx((1 - both) / 2 + both / 4)
    assert view_cap(TABLE, "pooled") == pytest.approx((sync * 8 + ((1 - both) / 2 + both / 4) * 8) / 16)
    # visual only: the sound is unknown, so at most half
    assert view_cap(TABLE, "visual") < 0.5 and view_cap(TABLE, "visual", ("order",)) < 0.5


def test_view_cap_is_computed_from_the_table():
    one_sound = [c for c in TABLE if c.sound == SOUNDS[0]]
    assert view_cap(one_sound, "audio") == pytest.approx(1 / 4)  # it tells the kind: 4 classes of each remain
    assert view_cap(one_sound, "visual", ("order",)) > view_cap(TABLE, "visual", ("order",))
    with pytest.raises(ValueError, match="view"):
        view_cap(TABLE, "smell")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the files

@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hard")
    synth(out, videos=12, seed=3, workers=2, task="hard")
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_hard_corpus_reads_back_as_kinetics(corpus: Path):
    m = read_k400(corpus)
    assert len(m) == 12 and all(r.exists for r in m.rows) and all(r.text for r in m.rows)
    assert set(m.classes) <= {c.name for c in TABLE}
    classes = _rows(corpus / "classes.csv")
    assert [r["name"] for r in classes] == [c.name for c in TABLE]
    blocks = Counter(r["video_id"] for r in _rows(corpus / "timelines.csv"))
    assert set(blocks) == {r.video_id for r in m.rows} and set(blocks.values()) == {BLOCKS}
    with pytest.raises(ValueError, match="classes"):
        synth(corpus / "x", videos=2, classes=8, task="hard")


def _decode(path: str) -> tuple[list[tuple[float, np.ndarray]], np.ndarray, int]:
    with av.open(path) as c:
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(path) as c:
        rate = c.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1).mean(0)
    return frames, audio, rate


def test_hard_videos_follow_their_timelines(corpus: Path):
    """Mid-block frames show the block's colour; sounding blocks are far louder than silent ones."""
    palette = np.array([p.rgb for p in VISUAL_PATTERNS], float)
    keys = [p.key for p in VISUAL_PATTERNS]
    plan: dict[str, list[dict[str, str]]] = {}
    for r in _rows(corpus / "timelines.csv"):
        plan.setdefault(r["video_id"], []).append(r)
    rows = [r for r in read_k400(corpus).rows if Path(r.path).stat().st_size > 0][:3]
    for row in rows:
        frames, audio, rate = _decode(row.path)
        for b, block in enumerate(plan[row.video_id]):
            mid = (b + 0.5) * BLOCK_SECONDS
            image = min(frames, key=lambda f: abs(f[0] - mid))[1].reshape(-1, 3).astype(float)
            dist = np.linalg.norm(image[:, None] - palette[None], axis=-1)
            near = Counter(dist.argmin(1)[dist.min(1) < 60].tolist())
            assert near.most_common(1)[0][0] == keys.index(block["visual"]), (row.video_id, b, near)
            span = audio[int((b + 0.2) * BLOCK_SECONDS * rate):int((b + 0.8) * BLOCK_SECONDS * rate)]
            rms = float(np.sqrt(np.mean(span ** 2)))
            assert (rms > 0.1) if block["sound"] else (rms < 0.07), (row.video_id, b, rms)
    assert {s.key for s in SOUND_PATTERNS[:2]} >= {r["sound"] for p in plan.values() for r in p if r["sound"]}
