"""Noisy free-text captions of AV-Synth videos, the way titles and descriptions name what is in them."""

from __future__ import annotations

import numpy as np

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS
from .hard import HardClass
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


_SYNC = ("{v} shows up right when {s} starts {f}", "{f} {s} while {v} is on screen", "watch for {v} during {s}",
         "{v} + {s} at the same time {f}")
_ORDER = ("first {v} then {w}, {s} both times {f}", "{f} {v} and later {w}, each with {s}",
          "{s} over {v}, then again over {w}")
_PARTIAL = ("look at the shapes {f}", "{f} some sounds and shapes", "random clip with {s}", "{v} and other stuff")


def hard_caption(cls: HardClass, rng: np.random.Generator) -> str:
    """A noisy caption of a hard video: the event(s) and their order (80%) or a vague description (20%)."""
    v = [rng.choice(VISUAL_PATTERNS[i].synonyms) for i in cls.visuals]
    s = rng.choice(SOUND_PATTERNS[cls.sound].synonyms)
    templates = (_SYNC if cls.kind == "sync" else _ORDER) if rng.random() < 0.8 else _PARTIAL
    text = str(rng.choice(templates)).format(v=v[0], w=v[-1], s=s, f=rng.choice(_FILLERS))
    return " ".join(text.split())
