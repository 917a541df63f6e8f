"""AV-Synth hard: classes named by what happens WHEN, so late fusion and mean pooling lose what they need.

A hard video is 8 s long and made of ``BLOCKS`` blocks of ``BLOCK_SECONDS`` each; every block shows one visual
pattern, and a block either plays a sound or is silent. Each pattern appears in exactly one block, so every
pattern on screen is shown equally long. Two kinds of class:

- **sync** ``(p, s)``: one block plays sound s while pattern p is on screen; the other blocks are silent and
  show distractor patterns (any pattern but p, target patterns included). Which pattern counts is decided
  by when the sound plays.
- **order** ``(p, q, s)``: two blocks play sound s, the earlier one showing p and the later one q; the other
  blocks are silent distractors. ``(p, q, s)`` and ``(q, p, s)`` are different classes: only the order
  of the two audio-visual events tells them apart.

The blocks, the position of the sounding blocks and the distractors are drawn uniformly from every
timeline the class allows (:func:`timelines`), so the best accuracy of a model that sees only part of a
video follows from the table (``caps.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS

BLOCKS = 4
BLOCK_SECONDS = 2.0
DURATION = BLOCKS * BLOCK_SECONDS
SILENT = -1
TARGETS = (0, 1, 2, 3)  # visual patterns that name classes; every pattern can be a distractor
SOUNDS = (0, 1)  # a low hum, a high whistle
ORDER_PAIRS = ((0, 1), (2, 3))  # each in both orders

Block = tuple[int, int]  # (visual pattern index, sound index or SILENT)
Timeline = tuple[Block, ...]


@dataclass(frozen=True)
class HardClass:
    """One hard class: ``visuals`` are the pattern indices shown while ``sound`` plays, in time order."""

    index: int
    name: str
    kind: str  # "sync" or "order"
    sound: int
    visuals: tuple[int, ...]


def _name(kind: str, sound: int, visuals: tuple[int, ...]) -> str:
    s = SOUND_PATTERNS[sound].name
    v = [VISUAL_PATTERNS[i].name for i in visuals]
    if kind == "sync":
        return f"{v[0]} while {s} plays"
    return f"{v[0]} then {v[1]}, both with {s}"


def hard_class_table() -> list[HardClass]:
    """The 16 hard classes: 8 sync (4 target patterns x 2 sounds), then 8 order (2 pairs x 2 orders x 2 sounds)."""
    specs = [("sync", s, (p,)) for s in SOUNDS for p in TARGETS]
    specs += [("order", s, pair) for s in SOUNDS for a, b in ORDER_PAIRS for pair in ((a, b), (b, a))]
    return [HardClass(i, _name(kind, s, v), kind, s, v) for i, (kind, s, v) in enumerate(specs)]


def timelines(cls: HardClass) -> list[Timeline]:
    """Every timeline of ``cls``, each equally likely: where its sounding blocks are, and which distinct
    distractor patterns (not among the class's own) fill the silent blocks, in which order."""
    others = [i for i in range(len(VISUAL_PATTERNS)) if i not in cls.visuals]
    free = BLOCKS - len(cls.visuals)
    out = []
    for where in itertools.combinations(range(BLOCKS), len(cls.visuals)):
        for distractors in itertools.permutations(others, free):
            blocks, shown, rest = [], iter(cls.visuals), iter(distractors)
            for b in range(BLOCKS):
                blocks.append((next(shown), cls.sound) if b in where else (next(rest), SILENT))
            out.append(tuple(blocks))
    return out


def sample_timeline(cls: HardClass, rng: np.random.Generator) -> Timeline:
    """One timeline of ``cls`` drawn uniformly from :func:`timelines`."""
    options = timelines(cls)
    return options[int(rng.integers(len(options)))]
