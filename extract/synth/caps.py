"""The best top-1 accuracy a model can reach when it sees only part of an AV-Synth hard video.

A view maps a timeline to what a model keeps of it. For uniform class priors and timelines drawn uniformly
per class, the Bayes-optimal classifier of a view picks, for each observation, the class most likely to
produce it; its accuracy is sum over observations of max_c P(observation | c), divided by the number of
classes (computed exactly, with fractions). Views:

- ``visual``: the patterns on screen, in time order (an ideal visual-only model);
- ``visual-pooled``: how long each pattern is on screen, not when (the average of the clips);
- ``audio``: the sound or silence of each block, in time order (an ideal audio-only model);
- ``audio-pooled``: how long each sound plays, not when (the average of the segments);
- ``pooled``: both pooled views: what is left when each stream is pooled over time before the two are
  fused (two-stream late fusion);
- ``timeline``: everything (1.0 when the table is consistent).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from fractions import Fraction
from typing import Callable, Literal

from .hard import HardClass, Timeline, timelines

View = Literal["visual", "visual-pooled", "audio", "audio-pooled", "pooled", "timeline"]


def _visual_pooled(t: Timeline) -> tuple:
    return tuple(sorted(Counter(v for v, _ in t).items()))


def _audio_pooled(t: Timeline) -> tuple:
    return tuple(sorted(Counter(s for _, s in t).items()))


VIEWS: dict[str, Callable[[Timeline], object]] = {
    "visual": lambda t: tuple(v for v, _ in t),
    "visual-pooled": _visual_pooled,
    "audio": lambda t: tuple(s for _, s in t),
    "audio-pooled": _audio_pooled,
    "pooled": lambda t: (_visual_pooled(t), _audio_pooled(t)),
    "timeline": lambda t: t,
}


def view_cap(table: list[HardClass], view: View, kinds: tuple[str, ...] = ("sync", "order")) -> float:
    """Best top-1 accuracy (0-1) over the classes of ``kinds`` of a model that sees only ``view``.

    The classifier may answer any class of the table (it does not know the kind either).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}; got {view!r}")
    scored = [c for c in table if c.kind in kinds]
    if not scored:
        raise ValueError(f"no class of kind {', '.join(kinds)} in the table")
    likelihood: dict[object, dict[int, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    for c in table:
        options = timelines(c)
        for t in options:
            likelihood[VIEWS[view](t)][c.index] += Fraction(1, len(options))
    kept = {c.index for c in scored}
    hits = Fraction(0)
    for per_class in likelihood.values():
        best = max(per_class.values())
        winners = [i for i, p in per_class.items() if p == best]  # ties: a fair coin among them
        hits += best * Fraction(sum(i in kept for i in winners), len(winners))
    return float(hits / len(scored))

