"""VideoMAE on each clip: ``(B, 3, T, S, S)`` -> ``(B, hidden)``.

The descriptor is what the release's classifier reads (``VideoMAEForVideoClassification`` with its
classifier removed): the mean of the patch tokens through ``fc_norm`` when the config says
``use_mean_pooling`` (the Kinetics fine-tuned releases), else the first token after the final LayerNorm.
A clip is the config's ``num_frames`` consecutive frames (16, tubelet 2) at the processor's size,
resized and cropped as for CLIP (:mod:`cavnet.extract.backbones.hf.clip`) and normalised with the
processor's own mean and std (the releases' differ from the class defaults).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones.hf.clip import image_sampling, vit_stages
from cavnet.extract.backbones.hf.family import Family, register_family, transformers_class
from cavnet.extract.config import EncoderConfig


class VideoMAEClips(nn.Module):
    """``net``: a ``VideoMAEForVideoClassification`` whose classifier is an identity; clips
    ``(B, 3, T, S, S)`` -> ``(B, hidden)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.classifier = nn.Identity()
        self.net = net
        layers = [f"net.videomae.encoder.layer.{i}" for i in range(len(net.videomae.encoder.layer))]
        head = ("net.fc_norm",) if net.fc_norm is not None else ("net.videomae.layernorm",)
        self.stages = vit_stages(("net.videomae.embeddings",), layers, head)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=clips.transpose(1, 2)).logits  # VideoMAE takes (B, T, 3, S, S)


class VideoMAEFamily(Family):
    name, modality = "VideoMAE", "visual"
    model_types = ("videomae",)
    processor, hf_class, any_name = "VideoMAEImageProcessor", "VideoMAEForVideoClassification", "videomae-any"
    missing_ok = ("classifier.",)

    def default_config(self, facts: dict[str, Any]) -> Any:
        hidden = facts["hidden_size"]
        return transformers_class("VideoMAEConfig")(**facts, intermediate_size=4 * hidden,
                                                    num_attention_heads=hidden // 64, use_mean_pooling=True)

    def facts(self, config: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((k, getattr(config, k)) for k in ("hidden_size", "num_hidden_layers", "patch_size",
                                                        "image_size", "num_frames", "tubelet_size"))

    def wrap(self, net: nn.Module, encoder: EncoderConfig) -> nn.Module:
        return VideoMAEClips(net)

    def out_dim(self, config: Any, encoder: EncoderConfig) -> int:
        return config.hidden_size

    def inputs(self, processor: Any, config: Any, encoder: EncoderConfig) -> dict[str, Any]:
        sampling = image_sampling(processor, config.num_frames)
        if sampling.size != config.image_size:
            raise CavnetError(f"the image processor crops {sampling.size} px, the VideoMAE model takes "
                              f"{config.image_size} px")
        return {"sampling": sampling}

    def describe(self, config: Any) -> str:
        pool = "mean + fc_norm" if config.use_mean_pooling else "first token"
        return (f"VideoMAE {config.num_frames} x {config.image_size} px (tubelet {config.tubelet_size}, patch "
                f"{config.patch_size}), hidden {config.hidden_size} x {config.num_hidden_layers} layers, {pool}")


VIDEOMAE = VideoMAEFamily()
_ZOO = "Tong et al. 2022, 16x5x3 views, github.com/MCG-NJU/VideoMAE MODEL_ZOO.md"
register_family(VIDEOMAE, [
    ("videomae-base", "MCG-NJU/videomae-base-finetuned-kinetics",
     {"hidden_size": 768, "num_hidden_layers": 12, "patch_size": 16, "image_size": 224, "num_frames": 16,
      "tubelet_size": 2}, 768, "VideoMAE ViT-B fine-tuned on Kinetics-400, 16-frame clips",
     f"Kinetics-400 top-1 81.5 ({_ZOO})"),
    ("videomae-large", "MCG-NJU/videomae-large-finetuned-kinetics",
     {"hidden_size": 1024, "num_hidden_layers": 24, "patch_size": 16, "image_size": 224, "num_frames": 16,
      "tubelet_size": 2}, 1024, "VideoMAE ViT-L fine-tuned on Kinetics-400, 16-frame clips",
     f"Kinetics-400 top-1 85.2 ({_ZOO})"),
])
