"""torchvision's Kinetics-400 video models as visual backbones: clips ``(B, 3, T, H, W)`` -> ``(B, D)``.

Each is torchvision's own module with its classifier replaced by ``nn.Identity``, so the feature is exactly
what torchvision feeds its classifier and the state dict keys are torchvision's (its released files load as
they are; the classifier keys are dropped by the loader):

    r3d_18, mc3_18, r2plus1d_18   stem, layer1..4, global average pool    -> (B, 512)   classifier ``fc``
    s3d                           features, 2x7x7 average pool, then the mean over what is left
                                  (torchvision's classifier is a 1x1x1 conv, so pooling first gives the
                                  same logits)                            -> (B, 1024)  ``classifier.1``
    mvit_v1_b, mvit_v2_s          class token after the final LayerNorm   -> (B, 768)   ``head.1``
    swin3d_t / _s / _b            final LayerNorm, global average pool    -> (B, 768 / 768 / 1024)  ``head``

The preprocessing of each comes from its weights enum at registration: frames per clip (``clip_len`` of
the evaluation torchvision documents in ``meta["_docs"]``), resize, crop, mean and std (``transforms()``,
converted to 0-255 pixels), and the release facts (file, URL, Kinetics-400 top-1) from ``meta``
and ``url``. Reading an enum opens no file; the weights themselves are loaded apart
(:mod:`cavnet.extract.backbones.pretrained`).

``model.stages`` names the module paths of the five stages ``--freeze-until`` knows (stem, layer1..4):
the ResNets' own; S3D's Conv1 | Conv2-3 | Mixed-3 | Mixed-4 | Mixed-5 blocks (with the pools between them);
MViT's blocks grouped by head count (1 | 2 | 4 | 8 heads: its four scales); Swin's four stages with the
patch merging before each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from cavnet.extract.backbones import Release, register
from cavnet.extract.config import ClipSampling


@dataclass(frozen=True)
class TorchvisionVideo:
    """One torchvision video model: its builder name, weights enum member, feature width and classifier."""

    arch: str
    weights: str  # e.g. "R2Plus1D_18_Weights.KINETICS400_V1"
    out_dim: int
    classifier: str  # the attribute replaced by nn.Identity
    classifier_key: str  # the prefix of its keys in the release


MODELS = (
    TorchvisionVideo("r3d_18", "R3D_18_Weights.KINETICS400_V1", 512, "fc", "fc."),
    TorchvisionVideo("mc3_18", "MC3_18_Weights.KINETICS400_V1", 512, "fc", "fc."),
    TorchvisionVideo("r2plus1d_18", "R2Plus1D_18_Weights.KINETICS400_V1", 512, "fc", "fc."),
    TorchvisionVideo("s3d", "S3D_Weights.KINETICS400_V1", 1024, "classifier", "classifier."),
    TorchvisionVideo("mvit_v1_b", "MViT_V1_B_Weights.KINETICS400_V1", 768, "head", "head."),
    TorchvisionVideo("mvit_v2_s", "MViT_V2_S_Weights.KINETICS400_V1", 768, "head", "head."),
    TorchvisionVideo("swin3d_t", "Swin3D_T_Weights.KINETICS400_V1", 768, "head", "head."),
    TorchvisionVideo("swin3d_s", "Swin3D_S_Weights.KINETICS400_V1", 768, "head", "head."),
    TorchvisionVideo("swin3d_b", "Swin3D_B_Weights.KINETICS400_V1", 1024, "head", "head."),
)

_S3D_STAGES = {"stem": (0, 1), "layer1": (2, 3, 4), "layer2": (5, 6, 7), "layer3": (8, 9, 10, 11, 12, 13),
               "layer4": (14, 15)}


def weights_enum(m: TorchvisionVideo) -> Any:
    from torchvision.models import video

    enum_name, member = m.weights.split(".")
    return getattr(getattr(video, enum_name), member)


def sampling_of(weights: Any) -> ClipSampling:
    """The clips ``weights`` were evaluated on, from its ``transforms()`` and ``meta["_docs"]``."""
    t = weights.transforms()
    crop, resize = list(t.crop_size), list(t.resize_size)
    if len(crop) != 2 or crop[0] != crop[1]:
        raise ValueError(f"{weights}: crop {crop} is not square")
    found = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))
    if found is None:
        raise ValueError(f"{weights}: meta['_docs'] names no clip_len")
    exact = tuple(resize) if len(resize) == 2 else None
    return ClipSampling(frames=int(found.group(1)), short_side=min(resize), size=crop[0],
                        mean=tuple(255.0 * float(v) for v in t.mean), std=tuple(255.0 * float(v) for v in t.std),
                        resize=exact)


def release_of(weights: Any) -> Release:
    url = weights.url
    file = url.rsplit("/", 1)[-1]
    prefix = re.search(r"-([0-9a-f]{6,})\.pth$", file)
    top1 = weights.meta["_metrics"]["Kinetics-400"]["acc@1"]
    return Release(name=f"torchvision {type(weights).__name__}.{weights.name}", file=file, url=url,
                   sha256_prefix=prefix.group(1) if prefix else "", hub_cache=True,
                   metrics=(("Kinetics-400 top-1", float(top1)),))


def stages_of(net: nn.Module, arch: str) -> dict[str, tuple[str, ...]]:
    """Stage name -> module paths, in order; together they hold every parameter left after the classifier."""
    if arch.startswith(("r3d", "mc3", "r2plus1d")):
        return {"stem": ("stem",), **{f"layer{k}": (f"layer{k}",) for k in range(1, 5)}}
    if arch == "s3d":
        return {name: tuple(f"features.{i}" for i in idx) for name, idx in _S3D_STAGES.items()}
    if arch.startswith("mvit"):
        heads = [block.attn.num_heads for block in net.blocks]
        groups: list[list[str]] = []
        for i, h in enumerate(heads):
            if i == 0 or h != heads[i - 1]:
                groups.append([])
            groups[-1].append(f"blocks.{i}")
        if len(groups) != 4:
            raise ValueError(f"{arch}: expected 4 scales of blocks, found head counts {heads}")
        groups[-1].append("norm")
        return {"stem": ("conv_proj", "pos_encoding"), **{f"layer{k}": tuple(g) for k, g in enumerate(groups, 1)}}
    return {"stem": ("patch_embed",), "layer1": ("features.0",), "layer2": ("features.1", "features.2"),
            "layer3": ("features.3", "features.4"), "layer4": ("features.5", "features.6", "norm")}


def build(m: TorchvisionVideo) -> nn.Module:
    """torchvision's ``m.arch`` with random weights and no classifier: ``(B, 3, T, H, W)`` -> ``(B, out_dim)``."""
    from torchvision.models import video

    net = getattr(video, m.arch)(weights=None)
    setattr(net, m.classifier, nn.Identity())
    net.classifier_prefixes = (m.classifier_key,)
    net.stages = stages_of(net, m.arch)
    return net


def _register_all() -> None:
    for m in MODELS:
        w = weights_enum(m)
        s = sampling_of(w)
        rate = re.search(r"frame_rate=([\d.]+)", w.meta.get("_docs", ""))
        fps = f", {rate.group(1)} fps in torchvision's evaluation" if rate else ""
        register(m.arch, "visual", m.out_dim, sampling=s, release=release_of(w),
                 description=f"torchvision {m.arch} (Kinetics-400), {s.frames}x{s.size}x{s.size} clips{fps}"
                 )(lambda m=m: build(m))


_register_all()
