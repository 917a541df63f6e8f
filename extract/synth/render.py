"""AV-Synth rendering: the pictures and sounds of one video, from its ``VideoSpec`` (no file I/O).

An easy video shows one pattern and plays one sound throughout; a hard video follows its timeline block by
block (``hard.py``).
"""

from __future__ import annotations

import numpy as np

from .patterns import SOUND_PATTERNS, VISUAL_PATTERNS
from .plan import VideoSpec


# ----------------------------------------------------------------------------------------- pictures

def _sprite(shape: str, rgb: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The object as ``(s, s, 3)`` uint8 colours and an ``(s, s)`` bool mask."""
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    c = s / 2
    r = np.hypot(yy - c, xx - c)
    cell = max(2, s // 5)
    dark = (yy // cell + (xx // cell if shape == "checkerboard" else 0)) % 2 == 1
    masks = {
        "square": np.ones((s, s), bool), "stripes": np.ones((s, s), bool),
        "checkerboard": np.ones((s, s), bool), "disc": r <= c,
        "ring": (r <= c) & (r >= 0.55 * c), "triangle": yy >= 2 * np.abs(xx - c),
        "cross": (np.abs(yy - c) <= s / 6) | (np.abs(xx - c) <= s / 6),
        "dots": np.hypot((yy % (s / 3)) - s / 6, (xx % (s / 3)) - s / 6) <= s / 7.5,
    }
    colours = np.broadcast_to(rgb, (s, s, 3)).copy()
    if shape in ("stripes", "checkerboard"):
        colours[dark] = (rgb * 0.25).astype(np.uint8)
    return colours, masks[shape]


def _bounce(p0: float, v: float, t: np.ndarray, span: int) -> np.ndarray:
    """Positions of a point moving at ``v`` px/frame that bounces inside ``[0, span]``."""
    if span <= 0:
        return np.zeros_like(t, dtype=int)
    x = np.mod(p0 + v * t, 2 * span)
    return np.where(x > span, 2 * span - x, x).astype(int)


def _block_of(spec: VideoSpec, t_frames: int) -> np.ndarray:
    """``(T,)`` index of the timeline block each frame falls in (all 0 without a timeline)."""
    if not spec.timeline:
        return np.zeros(t_frames, dtype=int)
    seconds = spec.duration / len(spec.timeline)
    return np.minimum((np.arange(t_frames) / spec.fps / seconds).astype(int), len(spec.timeline) - 1)


def _block_sprites(spec: VideoSpec, s: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sprite of each timeline block: its pattern, its own colour jitter, the video's size ``s``."""
    rng = np.random.default_rng([spec.seed, spec.index, 4])
    sprites = []
    for visual, _ in spec.timeline:
        pattern = VISUAL_PATTERNS[visual]
        rgb = np.clip(np.array(pattern.rgb) + rng.integers(-15, 16, size=3), 0, 255).astype(np.uint8)
        sprites.append(_sprite(pattern.shape, rgb, s))
    return sprites


def render_frames(spec: VideoSpec) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8: a moving pattern over a tinted, noisy background; with a timeline, the
    pattern of each block in turn (same size and motion throughout)."""
    rng = np.random.default_rng([spec.seed, spec.index, 1])
    (w, h), pattern = spec.size, VISUAL_PATTERNS[spec.visual]
    t_frames = max(1, int(round(spec.duration * spec.fps)))
    tint = rng.uniform(50, 130) + rng.uniform(-15, 15, size=3)
    texture = rng.normal(0, rng.uniform(4, 14), size=(h // 4 + 1, w // 4 + 1, 1))
    static = tint + np.repeat(np.repeat(texture, 4, 0), 4, 1)[:h, :w]
    backgrounds = [np.clip(static + rng.normal(0, 5, size=(h, w, 3)), 0, 255).astype(np.uint8)
                   for _ in range(3)]
    rgb = np.clip(np.array(pattern.rgb) + rng.integers(-15, 16, size=3), 0, 255).astype(np.uint8)
    s = int(min(w, h) * rng.uniform(0.5, 0.7))
    colours, mask = _sprite(pattern.shape, rgb, s)
    t = np.arange(t_frames)
    speed = rng.uniform(0.5, 2.5, size=2) * rng.choice([-1, 1], size=2)
    xs = _bounce(rng.uniform(0, w - s), speed[0], t, w - s)
    ys = _bounce(rng.uniform(0, h - s), speed[1], t, h - s)
    sprites = _block_sprites(spec, s) if spec.timeline else [(colours, mask)]
    blocks = _block_of(spec, t_frames)
    frames = np.empty((t_frames, h, w, 3), np.uint8)
    for i in range(t_frames):
        frames[i] = backgrounds[i % 3]
        colours, mask = sprites[blocks[i]]
        np.copyto(frames[i, ys[i]:ys[i] + s, xs[i]:xs[i] + s], colours, where=mask[..., None])
    return frames


# ------------------------------------------------------------------------------------------- sounds

def _tone(freq: np.ndarray | float, sr: int, n: int) -> np.ndarray:
    """A sine whose instantaneous frequency is ``freq`` (a scalar or ``(n,)`` array) in Hz."""
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(np.asarray(freq, float), (n,))) / sr
    return np.sin(phase)


def _gate(t: np.ndarray, rate: float, duty: float, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 on-off envelope at ``rate`` Hz, on for ``duty`` of each period, random phase."""
    return (np.mod(t * rate + rng.uniform(), 1.0) < duty).astype(float)


def _sound(kind: str, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The clean ``(n,)`` signal of one sound pattern, pitch jittered by a few percent."""
    t = np.arange(n) / sr
    k = rng.uniform(0.97, 1.03)
    if kind == "hum":
        return _tone(220 * k, sr, n) + 0.5 * _tone(440 * k, sr, n) + 0.25 * _tone(660 * k, sr, n)
    if kind == "whistle":
        return _tone(2000 * k + 30 * np.sin(2 * np.pi * 5 * t), sr, n)
    if kind == "beep":
        return _tone(1000 * k, sr, n) * _gate(t, 4, 0.5, rng)
    if kind == "chirp":
        return _tone(300 * k * 10 ** np.mod(t, 1.0), sr, n)  # 300 -> 3000 Hz each second
    if kind == "bursts":
        return rng.uniform(-1, 1, n) * _gate(t, 2, 0.3, rng)
    if kind == "buzz":
        return sum(_tone(500 * k * h, sr, n) / h for h in (1, 3, 5, 7) if 500 * k * h < sr / 2)
    if kind == "knock":
        phase = np.mod(t * 2.5 + rng.uniform(), 1.0) / 2.5
        return _tone(180 * k, sr, n) * np.exp(-phase * 30) + 0.3 * rng.uniform(-1, 1, n) * (phase < 0.01)
    if kind == "siren":
        return _tone(np.where(np.mod(t, 1.0) < 0.5, 600.0, 900.0) * k, sr, n)
    raise ValueError(f"unknown sound kind {kind!r}")


def _event(kind: str, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One sound of ``n`` samples at a random level in [0.3, 0.6], with 10 ms fades in and out."""
    clean = _sound(kind, sr, n, rng)
    clean = clean / max(1e-6, float(np.abs(clean).max())) * rng.uniform(0.3, 0.6)
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / max(1.0, 0.01 * sr))
    return clean * ramp


def _timeline_audio(spec: VideoSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """The clean ``(n,)`` track of a timeline: each sounding block plays its sound, the others are silent."""
    clean = np.zeros(n)
    edges = np.linspace(0, n, len(spec.timeline) + 1).round().astype(int)
    for (_, sound), start, stop in zip(spec.timeline, edges[:-1], edges[1:]):
        if sound >= 0:
            clean[start:stop] = _event(SOUND_PATTERNS[sound].kind, spec.sample_rate, stop - start, rng)
    return clean


def render_audio(spec: VideoSpec) -> np.ndarray:
    """Audio ``(channels, samples)`` float32 in [-1, 1]: the sound pattern (with a timeline, the sound of each
    sounding block, silence elsewhere) plus background noise."""
    rng = np.random.default_rng([spec.seed, spec.index, 2])
    n = int(round(spec.duration * spec.sample_rate))
    if spec.timeline:
        clean = _timeline_audio(spec, n, rng)
    else:
        clean = _sound(SOUND_PATTERNS[spec.sound].kind, spec.sample_rate, n, rng)
        clean = clean / max(1e-6, float(np.abs(clean).max())) * rng.uniform(0.3, 0.6)
    gains = np.array([1.0]) if spec.channels == 1 else rng.uniform(0.7, 1.0, size=2)
    noise = rng.normal(0, rng.uniform(0.005, 0.06), size=(spec.channels, n))
    return np.clip(gains[:, None] * clean[None] + noise, -1, 1).astype(np.float32)
