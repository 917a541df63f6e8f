"""The whole CAV-Net from raw clips: 3D-ResNeXt + audio CNN + fusion, with what fine-tuning needs
(frozen stages, frozen BatchNorm statistics, per-backbone precision, parameter groups). No file I/O.

    clips (B, n, T, S, S, 3) uint8, vmask (B, n)      -> (x - mean) / std -> visual backbone on valid clips
    examples (B, m, 1, F, M) float32, amask (B, m)    -> audio backbone on valid examples
    -> features (B, n, Dv), (B, m, Da), zeros where masked -> CAVNet fusion -> (B, out_dim)
"""

from __future__ import annotations

import contextlib
import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones.stages import named_stage_modules
from cavnet.extract.clip_input import ClipNormalize
from cavnet.extract.config import ClipSampling
from cavnet.fuse.model import CAVNet


def _autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def stem_and_stages(backbone: nn.Module, until: str) -> list[nn.Module]:
    """The children of ``backbone`` up to stage ``until``: 'stem' = everything before ``layer1``,
    'layerK' = the stem and layer1..layerK; 'none' = nothing. Raises for a backbone without such stages."""
    if until == "none":
        return []
    if hasattr(backbone, "stages"):  # a backbone that names its stages (torchvision's video models)
        return named_stage_modules(backbone, until)
    names = [name for name, _ in backbone.named_children()]
    stop = "layer1" if until == "stem" else until
    if stop not in names:
        raise CavnetError(f"--freeze-until {until}: the visual backbone has no stage {stop} "
                          f"(its parts: {', '.join(names)})")
    keep = names[:names.index(stop) + (until != "stem")]
    return [getattr(backbone, name) for name in keep]


class AVNet(nn.Module):
    """Backbones + CAV-Net fusion. ``forward(clips, vmask, examples, amask) -> (B, out_dim)``.

    ``frozen`` modules (whole backbones or their first stages) get ``requires_grad = False`` and stay in
    eval mode; with ``freeze_bn`` every BatchNorm of the backbones stays in eval mode too (running
    statistics fixed, affine weights still trained). ``visual_bf16`` / ``audio_bf16`` autocast that
    backbone on its device; the fusion always runs in float32 on float32 features.
    """

    def __init__(self, visual: nn.Module, audio: nn.Module, fusion: CAVNet, sampling: ClipSampling,
                 frozen: list[nn.Module], freeze_bn: bool = True, visual_bf16: bool = False,
                 audio_bf16: bool = False) -> None:
        super().__init__()
        self.visual, self.audio, self.fusion = visual, audio, fusion
        self.normalise = ClipNormalize(sampling)
        self.frozen = frozen  # a plain list: not registered twice as submodules
        self.freeze_bn = freeze_bn
        self.visual_bf16, self.audio_bf16 = visual_bf16, audio_bf16
        self.channels_last = False
        for module in frozen:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "AVNet":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        if self.freeze_bn:
            for backbone in (self.visual, self.audio):
                for m in backbone.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def _run(self, backbone: nn.Module, x: torch.Tensor, mask: torch.Tensor, bf16: bool) -> torch.Tensor:
        """``x`` (B, L, ...) and ``mask`` (B, L) -> (B, L, D) float32, the backbone run on valid rows only."""
        b, length = mask.shape
        out = x.new_zeros((b, length, backbone.out_dim), dtype=torch.float32)
        trainable = [p for p in backbone.parameters() if p.requires_grad]
        if not mask.any():  # keep every trainable weight in the graph (distributed gradient sync)
            return out + 0.0 * sum(p.sum() for p in trainable) if trainable and torch.is_grad_enabled() else out
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(trainable)):
            with _autocast(bf16, x.device):
                feats = backbone(self._prepare(backbone, x[mask]))
        return out.index_put((mask.nonzero(as_tuple=True)), feats.float())

    def _prepare(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if backbone is not self.visual:
            return x
        x = self.normalise(x)  # (K, 3, T, S, S)
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def features(self, clips: torch.Tensor, vmask: torch.Tensor, examples: torch.Tensor,
                 amask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(B, n, Dv) visual and (B, m, Da) audio descriptors, zeros where masked; None for a modality the
        fusion does not use (that backbone is not run)."""
        c = self.fusion.config
        visual = self._run(self.visual, clips, vmask, self.visual_bf16) if c.use_visual else None
        audio = self._run(self.audio, examples, amask, self.audio_bf16) if c.use_audio else None
        return visual, audio

    def forward(self, clips: torch.Tensor, vmask: torch.Tensor, examples: torch.Tensor,
                amask: torch.Tensor) -> torch.Tensor:
        visual, audio = self.features(clips, vmask, examples, amask)
        return self.fusion(visual, vmask, audio, amask)
