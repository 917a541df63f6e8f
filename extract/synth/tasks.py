"""AV-Synth's class table: each class a pair (visual pattern, sound), every pattern shared by two classes,
and the best accuracy a model that sees only part of a video can reach, computed from the table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS

MAX_CLASSES = 2 * min(len(VISUAL_PATTERNS), len(SOUND_PATTERNS))


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
