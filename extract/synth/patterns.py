"""AV-Synth's visual patterns and sounds: what each one looks or sounds like, and how captions name it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VisualPattern:
    """A coloured shape or texture: ``rgb`` is its main colour, ``synonyms`` are caption phrasings."""

    key: str
    name: str
    rgb: tuple[int, int, int]
    shape: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class SoundPattern:
    """A sound with a distinct pitch/timbre; ``name`` reads after "with", e.g. "a low hum"."""

    key: str
    name: str
    kind: str
    synonyms: tuple[str, ...]


VISUAL_PATTERNS: tuple[VisualPattern, ...] = (
    VisualPattern("red_square", "red square", (220, 40, 40), "square",
                  ("a red square", "a red box", "a crimson block")),
    VisualPattern("blue_disc", "blue disc", (40, 70, 230), "disc",
                  ("a blue disc", "a blue circle", "a blue ball")),
    VisualPattern("green_stripes", "green stripes", (40, 200, 60), "stripes",
                  ("green stripes", "a striped green patch", "green lines")),
    VisualPattern("yellow_checkerboard", "yellow checkerboard", (240, 220, 40), "checkerboard",
                  ("a yellow checkerboard", "a yellow checkered tile", "a yellow chessboard")),
    VisualPattern("magenta_triangle", "magenta triangle", (215, 45, 205), "triangle",
                  ("a magenta triangle", "a pink triangle", "a purple wedge")),
    VisualPattern("cyan_ring", "cyan ring", (40, 215, 225), "ring",
                  ("a cyan ring", "a turquoise ring", "a light blue hoop")),
    VisualPattern("white_cross", "white cross", (245, 245, 245), "cross",
                  ("a white cross", "a white plus sign", "a pale cross")),
    VisualPattern("orange_dots", "orange dots", (250, 140, 25), "dots",
                  ("orange dots", "orange polka dots", "a few orange spots")),
)

SOUND_PATTERNS: tuple[SoundPattern, ...] = (
    SoundPattern("low_hum", "a low hum", "hum", ("a low hum", "a deep drone", "a humming noise")),
    SoundPattern("high_whistle", "a high whistle", "whistle",
                 ("a high whistle", "a shrill whistle", "a high pitched whistling")),
    SoundPattern("beeping", "a beeping tone", "beep", ("a beeping tone", "beeps", "a pulsing beep")),
    SoundPattern("rising_chirp", "a rising chirp", "chirp", ("a rising chirp", "a sweeping tone", "chirps")),
    SoundPattern("static_bursts", "bursts of static", "bursts",
                 ("bursts of static", "crackling noise", "white noise bursts")),
    SoundPattern("buzzing", "a buzzing sound", "buzz", ("a buzzing sound", "a buzz", "an electric buzz")),
    SoundPattern("knocking", "a knocking sound", "knock", ("a knocking sound", "knocks", "tapping")),
    SoundPattern("siren", "a two-tone siren", "siren", ("a two-tone siren", "a siren", "a wailing alarm")),
)
