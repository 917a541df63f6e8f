"""Rebuild the whole CAV-Net (backbones + fusion) from a fuse-train or fine-tune checkpoint.

A fuse-train checkpoint holds the fusion and the store config: the backbones are rebuilt as extraction
built them (weight files checked against their recorded sha256; without weight files, the seeded random
initialisation every extraction worker uses). A fine-tune checkpoint also holds both backbones' weights.
"""

from __future__ import annotations

from typing import Any

import torch

from cavnet.errors import CavnetError
from cavnet.extract.backbones import create_backbone
from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import Manifest
from cavnet.fuse.checkpoint import model_from_checkpoint
from cavnet.extract.embed import build_backbones
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.model import AVNet, stem_and_stages


def store_config_of(state: dict[str, Any], source: str) -> ExtractConfig:
    """The extraction config recorded in a checkpoint (fuse-train checkpoints carry it since version 1)."""
    text = state.get("store_config")
    if not text:
        raise CavnetError(f"{source}: the checkpoint records no store config, so its backbones cannot be rebuilt")
    return ExtractConfig.from_json(text)


def check_classes(state: dict[str, Any], manifest: Manifest, source: str) -> None:
    """Refuse a corpus whose class list differs from the checkpoint's (the class embeddings index it)."""
    want = list(state.get("class_names", []))
    if list(manifest.classes) != want:
        extra = sorted(set(manifest.classes) - set(want))[:3]
        missing = sorted(set(want) - set(manifest.classes))[:3]
        raise CavnetError(f"the corpus has {len(manifest.classes)} classes, {source} was trained on {len(want)}"
                          f" (not in the checkpoint: {extra or 'none'}; not in the corpus: {missing or 'none'})")


def backbones_from(state: dict[str, Any], config: ExtractConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Both backbones on the CPU in eval mode, as the checkpoint's features were computed."""
    if "visual" in state and "audio" in state:  # a fine-tune checkpoint: its own backbone weights
        models = []
        for name, weights in ((config.visual, state["visual"]), (config.audio, state["audio"])):
            model = create_backbone(name)
            model.load_state_dict(weights)
            models.append(model)
        return models[0], models[1]
    return build_backbones(config, torch.device("cpu"))  # seeded as in every extraction worker


def build_avnet(state: dict[str, Any], device: torch.device, cfg: FinetuneConfig | None = None) -> AVNet:
    """The whole model on ``device``: frozen and float32 for scoring (``cfg`` None), else set up for
    training as ``cfg`` says (frozen parts, BatchNorm statistics, gradient checkpointing, precision)."""
    config = store_config_of(state, "checkpoint")
    visual, audio = backbones_from(state, config)
    fusion = model_from_checkpoint(state)
    if cfg is None:
        frozen, freeze_bn, vbf16, abf16 = [visual, audio], True, False, False
    else:
        c = fusion.config
        frozen = [visual, audio] if not cfg.trains_backbones else (
            ([] if c.use_visual else [visual]) + ([audio] if cfg.freeze_audio or not c.use_audio else [])
            + (stem_and_stages(visual, cfg.freeze_until) if c.use_visual else []))
        if cfg.grad_checkpoint:
            if not hasattr(visual, "grad_checkpoint"):
                raise CavnetError(f"--grad-checkpoint: {config.visual} has no gradient checkpointing")
            visual.grad_checkpoint = True
        cuda = device.type == "cuda"
        freeze_bn = cfg.freeze_bn
        vbf16, abf16 = cfg.amp == "bf16" and cuda, cfg.amp in ("auto", "bf16") and cuda
    net = AVNet(visual, audio, fusion, config.sampling, frozen, freeze_bn, vbf16, abf16)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        net.visual.to(memory_format=torch.channels_last_3d)
        net.channels_last = True
    return net.to(device)
