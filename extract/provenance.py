"""What a store's features were computed with, in words: pretrained weights (which) or random ones.

Commands that read a store (``check``, ``fuse-train``, ``evaluate``, the demo report) print
:func:`random_weights_note` so nobody mistakes features of a randomly initialised backbone for real ones.
A backbone counts as pretrained when the store config records the sha256 of its weight file.
"""

from __future__ import annotations

from typing import Any

from .config import ExtractConfig


def _config(config: ExtractConfig | str | dict[str, Any]) -> ExtractConfig:
    if isinstance(config, ExtractConfig):
        return config
    return ExtractConfig.from_json(config) if isinstance(config, str) else ExtractConfig.from_dict(config)


def weights_sources(config: ExtractConfig | str | dict[str, Any]) -> dict[str, str]:
    """``{"visual": ..., "audio": ...}``: ``"<backbone>: <what the weights are> (sha256 <first 12>)"`` or
    ``"<backbone>: random initialisation"``."""
    c = _config(config)
    out = {}
    for modality, name, sha, what in (("visual", c.visual, c.visual_weights_sha256, c.visual_weights_name),
                                      ("audio", c.audio, c.audio_weights_sha256, c.audio_weights_name)):
        if sha:
            label = what or f"file {c.visual_weights if modality == 'visual' else c.audio_weights}"
            out[modality] = f"{name}: {label} (sha256 {sha[:12]})"
        else:
            out[modality] = f"{name}: random initialisation"
    return out


def random_backbones(config: ExtractConfig | str | dict[str, Any]) -> list[str]:
    """``["visual <name>", ...]`` for each backbone whose features come from random weights."""
    c = _config(config)
    return [f"{m} {n}" for m, n, sha in (("visual", c.visual, c.visual_weights_sha256),
                                         ("audio", c.audio, c.audio_weights_sha256)) if not sha]


def random_weights_note(config: ExtractConfig | str | dict[str, Any]) -> str | None:
    """One line when any backbone was randomly initialised, else None."""
    random = random_backbones(config)
    if not random:
        return None
    return (f"random weights: features from randomly initialised {' and '.join(random)} (no pretrained "
            "weights), so accuracies say nothing about pretrained features; see docs/backbones.md")
