"""Rebuild the whole CAV-Net (backbones + fusion) from a fuse-train or fine-tune checkpoint.

A fuse-train checkpoint holds the fusion and the store config: the backbones are rebuilt as extraction
built them (weight files checked against their recorded sha256; without weight files, the seeded random
initialisation every extraction worker uses). A fine-tune checkpoint also holds both backbones' weights.
"""

from __future__ import annotations

import torch

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.extract.embed import backbone_for, build_backbones
from cavnet.extract.runtime import RunMode, prepare
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.model import AVNet, stem_and_stages


def backbones_from(ckpt: Checkpoint, config: ExtractConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Both backbones on the CPU in eval mode, as the checkpoint's features were computed."""
    if ckpt.visual is not None and ckpt.audio is not None:  # a fine-tune checkpoint: its own backbone weights
        models = []
        for modality, weights in (("visual", ckpt.visual), ("audio", ckpt.audio)):
            model = backbone_for(config, modality, weights=False)
            model.load_state_dict(weights)
            models.append(model)
        return models[0], models[1]
    return build_backbones(config, torch.device("cpu"))  # seeded as in every extraction worker


def build_avnet(ckpt: Checkpoint, device: torch.device, cfg: FinetuneConfig | None = None) -> AVNet:
    """The whole model on ``device``: frozen and float32 for scoring (``cfg`` None), else set up for
    training as ``cfg`` says (frozen parts, BatchNorm statistics, gradient checkpointing, precision)."""
    config = ckpt.extract_config()
    visual, audio = backbones_from(ckpt, config)
    fusion = ckpt.fusion_model()
    for modality, name, module, want in (("visual", config.visual, visual, fusion.config.visual_dim),
                                         ("audio", config.audio, audio, fusion.config.audio_dim)):
        got = getattr(module, "out_dim", None)
        if got is not None and got != want:  # a fusion trained on features its recorded backbones do not give
            raise CavnetError(f"checkpoint does not fit: its {modality} backbone {name} gives {got}-d features, "
                              f"its fusion takes {want}-d ones")
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
        prepare(net.visual, RunMode(layout="channels_last"), 5)  # each weight in the channels-last format of its rank
        net.channels_last = True
    return net.to(device)
