"""Where clips and audio examples go: uniform window placement shared by the visual and audio paths.

Units are the caller's (frames or seconds); the same two functions place visual clips and audio examples.
"""

from __future__ import annotations

import math

import numpy as np


def valid_count(total: float, length: float, maximum: int) -> int:
    """How many windows of ``length`` a span of ``total`` holds: ``clamp(floor(total / length), 1, maximum)``.

    A span shorter than one window still yields one (padded) window, so every decodable video contributes.
    """
    if maximum < 1:
        raise ValueError(f"maximum must be >= 1, got {maximum}")
    if length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    if not math.isfinite(total) or total <= 0:
        return 1
    # A tiny relative tolerance so 10 s / (16 / 30 fps) style ratios that land on an integer stay there.
    count = math.floor(total / length + 1e-9)
    return int(min(max(count, 1), maximum))


def uniform_starts(total: float, length: float, count: int) -> np.ndarray:
    """``(count,)`` float64 start positions of ``count`` windows of ``length`` spread uniformly over
    ``[0, total]``.

    The first window starts at 0 and the last ends at ``total`` (``np.linspace(0, total - length, count)``),
    so ``count = valid_count(...)`` windows tile the span without overlap. A single window is centred.
    When ``total < length`` every window starts at 0 (the caller pads).
    """
    if count < 1:
        return np.zeros(0, dtype=np.float64)
    slack = float(total) - float(length)
    if not math.isfinite(slack) or slack <= 0:
        return np.zeros(count, dtype=np.float64)
    if count == 1:
        return np.array([slack / 2.0], dtype=np.float64)
    return np.linspace(0.0, slack, count, dtype=np.float64)
