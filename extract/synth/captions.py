"""Noisy free-text captions of AV-Synth videos, the way titles and descriptions name what is in them."""

from __future__ import annotations

import numpy as np

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS
from .tasks import SynthClass

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
