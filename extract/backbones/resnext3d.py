"""3D-ResNeXt video backbone (Hara, Kataoka and Satoh, "Can Spatiotemporal 3D CNNs Retrace the History of
2D CNNs and ImageNet?", CVPR 2018), without its classifier: the feature is the globally pooled output of the
last stage.

Architecture (ResNeXt-101 numbers; every width is a field of :class:`ResNeXt3DConfig`)::

    input                    (B, 3, 16, 112, 112)  pixels 0-255 minus the ActivityNet mean, std 1
    conv1 7x7x7 / (1,2,2)    (B, 64, 16, 56, 56)   + bn1, relu
    maxpool 3x3x3 / 2        (B, 64, 8, 28, 28)
    layer1  3 blocks, /1     (B, 256, 8, 28, 28)
    layer2  4 blocks, /2     (B, 512, 4, 14, 14)
    layer3 23 blocks, /2     (B, 1024, 2, 7, 7)
    layer4  3 blocks, /2     (B, 2048, 1, 4, 4)
    adaptive avg pool        (B, 2048)

Each block is a bottleneck: 1x1x1 conv to the inner width, 3x3x3 grouped conv (``cardinality`` groups,
carrying the stage stride), 1x1x1 conv to ``expansion`` x the inner width, each followed by batch norm;
shortcut type B (a 1x1x1 conv + BN projection where the shape changes, identity elsewhere).
Module names match the released Kinetics checkpoints (``conv1``, ``bn1``, ``layerK.i.conv1 .. bn3``,
``layerK.0.downsample.0/.1``) once their ``module.`` prefix and ``fc`` are dropped
(:func:`cavnet.extract.backbones.weights.load_weights`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cavnet.extract.backbones import Release, register


@dataclass(frozen=True)
class ResNeXt3DConfig:
    """Shape of a 3D-ResNeXt. ``widths`` are the inner (grouped) widths of the four stages; a stage
    outputs ``expansion * width`` channels, so the feature width is ``expansion * widths[-1]``."""

    blocks: tuple[int, int, int, int] = (3, 4, 23, 3)
    widths: tuple[int, int, int, int] = (128, 256, 512, 1024)
    cardinality: int = 32
    expansion: int = 2
    stem_channels: int = 64
    stem_kernel: tuple[int, int, int] = (7, 7, 7)  # (t, h, w), padded by half on each side
    in_channels: int = 3

    @property
    def out_dim(self) -> int:
        return self.expansion * self.widths[-1]


RESNEXT3D_50 = ResNeXt3DConfig(blocks=(3, 4, 6, 3))
RESNEXT3D_101 = ResNeXt3DConfig(blocks=(3, 4, 23, 3))
RESNEXT3D_152 = ResNeXt3DConfig(blocks=(3, 8, 36, 3))
# Same code, about 0.25 M parameters and 0.4 GMAC per 16x112x112 clip: for tests and the demo on CPU.
# (The stem dominates the cost of so thin a network, hence 16 channels and a 3-frame kernel.)
RESNEXT3D_TINY = ResNeXt3DConfig(blocks=(1, 1, 1, 1), widths=(16, 32, 64, 128), cardinality=4,
                                 stem_channels=16, stem_kernel=(3, 7, 7))


class Bottleneck(nn.Module):
    """ResNeXt bottleneck: ``(B, in_ch, T, H, W) -> (B, expansion*width, T/s, H/s, W/s)``."""

    def __init__(self, in_ch: int, width: int, cardinality: int, expansion: int, stride: int) -> None:
        super().__init__()
        out_ch = width * expansion
        self.conv1 = nn.Conv3d(in_ch, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, kernel_size=3, stride=stride, padding=1,
                               groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_ch, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:  # shortcut type B
            self.downsample = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNeXt3D(nn.Module):
    """3D-ResNeXt feature extractor: clips ``(B, C, T, H, W)`` float -> ``(B, config.out_dim)``.

    Pooling is adaptive, so any ``T, H, W`` large enough to survive the strides works (the released
    weights were trained on 16 x 112 x 112). With ``grad_checkpoint = True`` each bottleneck block keeps
    only its input while gradients are being recorded and is run again in the backward pass (same outputs,
    less memory; BatchNorm running statistics are updated once, not twice).
    """

    grad_checkpoint: bool = False

    def __init__(self, config: ResNeXt3DConfig) -> None:
        super().__init__()
        if any(w % config.cardinality for w in config.widths):
            raise ValueError(f"every width in {config.widths} must divide by cardinality {config.cardinality}")
        self.config = config
        self.out_dim = config.out_dim
        self.conv1 = nn.Conv3d(config.in_channels, config.stem_channels, kernel_size=config.stem_kernel,
                               stride=(1, 2, 2), padding=tuple(k // 2 for k in config.stem_kernel), bias=False)
        self.bn1 = nn.BatchNorm3d(config.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_ch = config.stem_channels
        for k, (n, width, stride) in enumerate(zip(config.blocks, config.widths, (1, 2, 2, 2)), start=1):
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(in_ch, width, config.cardinality, config.expansion,
                                         stride if i == 0 else 1))
                in_ch = width * config.expansion
            self.add_module(f"layer{k}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, out_dim)``."""
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected clips (B, {self.config.in_channels}, T, H, W), got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if self.grad_checkpoint and torch.is_grad_enabled():
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
                for block in stage:
                    x = _checkpointed(block, x)
        else:
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` under activation checkpointing; the backward-pass rerun leaves BN statistics alone."""
    calls = [0]

    def run(inp: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        with _bn_frozen_stats(block) if calls[0] > 1 else contextlib.nullcontext():
            return block(inp)

    return checkpoint(run, x, use_reentrant=False)


@contextlib.contextmanager
def _bn_frozen_stats(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` with momentum 0: a training-mode forward leaves running stats as they are."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm3d) and m.training]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


@register("resnext3d-50", "visual", RESNEXT3D_50.out_dim,
          description="3D-ResNeXt-50 (Hara et al. CVPR 2018), cardinality 32, 16x112x112 clips")
def resnext3d_50() -> ResNeXt3D:
    return ResNeXt3D(RESNEXT3D_50)


# Hara et al.'s release (3D-ResNets-PyTorch, shared on Google Drive, no fixed URL); paper Table: 65.1 top-1.
RESNEXT3D_101_RELEASE = Release(name="3D-ResNets-PyTorch resnext-101-kinetics.pth (Hara et al.)",
                                file="resnext-101-kinetics.pth", url="https://github.com/kenshohara/3D-ResNets-PyTorch",
                                metrics=(("Kinetics-400 top-1", 65.1),))


@register("resnext3d-101", "visual", RESNEXT3D_101.out_dim, release=RESNEXT3D_101_RELEASE,
          description="3D-ResNeXt-101 (Hara et al. CVPR 2018), 47.5M params, 16x112x112 clips")
def resnext3d_101() -> ResNeXt3D:
    return ResNeXt3D(RESNEXT3D_101)


@register("resnext3d-152", "visual", RESNEXT3D_152.out_dim,
          description="3D-ResNeXt-152 (Hara et al. CVPR 2018), cardinality 32, 16x112x112 clips")
def resnext3d_152() -> ResNeXt3D:
    return ResNeXt3D(RESNEXT3D_152)


@register("resnext3d-tiny", "visual", RESNEXT3D_TINY.out_dim,
          description="tiny 3D-ResNeXt (1 block per stage, widths 16-128) for tests and the demo")
def resnext3d_tiny() -> ResNeXt3D:
    return ResNeXt3D(RESNEXT3D_TINY)
