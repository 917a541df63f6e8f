"""Checkpoints of stage two: weights plus every config needed to rebuild the model alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cavnet.errors import CavnetError
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.model import CAVNet


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (tmp + rename), so a killed run never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def trim_jsonl(path: Path, key: str, upto: int) -> None:
    """Keep the lines of a JSON-lines log whose ``key`` is at most ``upto`` (those the checkpoint a run
    resumes from holds); drop later ones, which the resumed run redoes, and any line torn by a kill."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)[key]) <= upto:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).exists():
        raise CavnetError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file
        raise CavnetError(f"{path}: not a cavnet checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "fusion_config" not in state or "model" not in state:
        raise CavnetError(f"{path}: not a cavnet fuse-train checkpoint")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> CAVNet:
    model = CAVNet(FusionConfig.from_dict(state["fusion_config"]))
    model.load_state_dict(state["model"])
    return model


def check_matches_store(state: dict[str, Any], dims: dict[str, int], text_dim: int, num_classes: int,
                        source: str) -> None:
    """Refuse a checkpoint whose input or output sizes differ from the store it is used with."""
    fc = state["fusion_config"]
    want = {"visual_dim": dims["visual_dim"], "audio_dim": dims["audio_dim"], "text_dim": text_dim,
            "num_classes": num_classes}
    bad = [f"{k} {fc.get(k)} vs {v}" for k, v in want.items() if fc.get(k) != v]
    if bad:
        raise CavnetError(f"checkpoint does not match {source}: " + ", ".join(bad))
