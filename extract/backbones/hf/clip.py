"""CLIP's image tower on the frames of each clip: ``(B, 3, T, S, S)`` -> ``(B, D)``.

Each of the clip's T frames (or ``frame_subset`` of them, evenly spaced) goes through the tower as an image
(the class token after ``post_layernorm``, then ``visual_projection``, as ``CLIPModel.get_image_features``);
the frame embeddings are averaged into the clip's descriptor. ``clip_embedding="pooled"`` averages the
class tokens before the projection instead (hidden size wide).

The frames reach the tower as ``CLIPImageProcessor`` leaves them: the decoder resizes the short side to the
processor's ``shortest_edge`` and crops the centre ``crop_size`` (swscale's area filter, where the processor
would resample bicubic: a small shift, as for the torchvision models), and ``ClipNormalize`` applies
``(x * rescale_factor - image_mean) / image_std`` in 0-255 units. Frames per clip: 8 consecutive frames.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones.hf.family import Family, register_family, transformers_class
from cavnet.extract.config import ClipSampling, EncoderConfig

CLIP_FRAMES = 8  # frames per clip (EVL's and X-CLIP's 8-frame views, spread here over one clip)


def frame_indices(frames: int, subset: int) -> torch.Tensor:
    """``subset`` evenly spaced indices of ``frames`` (all of them when ``subset`` is 0 or not smaller)."""
    if subset <= 0 or subset >= frames:
        return torch.arange(frames)
    return torch.linspace(0, frames - 1, subset).round().long()


class ClipFrames(nn.Module):
    """``tower``: a ``CLIPVisionModelWithProjection``; ``(B, 3, T, S, S)`` normalised clips -> ``(B, D)``."""

    def __init__(self, tower: nn.Module, frame_subset: int = 0, embedding: str = "projected") -> None:
        super().__init__()
        self.tower = tower
        self.frame_subset, self.embedding = frame_subset, embedding
        layers = [f"tower.vision_model.encoder.layers.{i}" for i in range(len(tower.vision_model.encoder.layers))]
        self.stages = vit_stages(("tower.vision_model.embeddings", "tower.vision_model.pre_layrnorm"), layers,
                                 ("tower.vision_model.post_layernorm", "tower.visual_projection"))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clips.shape
        idx = frame_indices(t, self.frame_subset).to(clips.device)
        frames = clips.index_select(2, idx).transpose(1, 2).reshape(b * len(idx), c, h, w)
        pooled = self.tower.vision_model(pixel_values=frames).pooler_output  # (B k, hidden)
        emb = self.tower.visual_projection(pooled) if self.embedding == "projected" else pooled
        return emb.view(b, len(idx), -1).mean(dim=1)


def vit_stages(stem: tuple[str, ...], layers: list[str], head: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--freeze-until`` stages of a ViT: the patch embedding as the stem, the blocks in four equal groups,
    the final norm (and projection) with the last."""
    quarter = [layers[len(layers) * k // 4:len(layers) * (k + 1) // 4] for k in range(4)]
    return {"stem": stem, **{f"layer{k + 1}": tuple(g) + (head if k == 3 else ()) for k, g in enumerate(quarter)}}


def image_sampling(processor: Any, frames: int) -> ClipSampling:
    """The clips an image processor (CLIP's, VideoMAE's) asks for: resize, centre crop, and
    ``(x * rescale_factor - mean) / std`` written in 0-255 units."""
    d = processor.to_dict()
    size, crop = d.get("size") or {}, d.get("crop_size") or {}
    if not d.get("do_resize", True) or not d.get("do_center_crop", True):
        raise CavnetError(f"{type(processor).__name__}: cavnet needs a resize and a centre crop (do_resize, "
                          "do_center_crop)")
    if crop.get("height") != crop.get("width"):
        raise CavnetError(f"{type(processor).__name__}: crop {crop} is not square")
    scale = float(d.get("rescale_factor", 1 / 255)) if d.get("do_rescale", True) else 1.0
    normalize = d.get("do_normalize", True)
    mean = [float(m) / scale for m in d.get("image_mean", (0.0, 0.0, 0.0))] if normalize else [0.0] * 3
    std = [float(s) / scale for s in d.get("image_std", (1.0, 1.0, 1.0))] if normalize else [1 / scale] * 3
    edge = size.get("shortest_edge")
    resize = None if edge else (int(size["height"]), int(size["width"]))
    return ClipSampling(frames=frames, short_side=int(edge or min(resize)), size=int(crop["height"]),
                        mean=tuple(mean), std=tuple(std), resize=resize)


class ClipFamily(Family):
    name, modality = "CLIP image tower", "visual"
    model_types = ("clip", "clip_vision_model")
    processor, hf_class, any_name = "CLIPImageProcessor", "CLIPVisionModelWithProjection", "clip-vit-any"
    text_kind = "clip"

    def sub_config(self, config: Any) -> Any:
        if config.model_type != "clip":
            return config
        vision = config.vision_config
        vision.projection_dim = config.projection_dim  # the sub-config's own is often the class default
        return vision

    def default_config(self, facts: dict[str, Any]) -> Any:
        hidden = facts["hidden_size"]
        return transformers_class("CLIPVisionConfig")(**facts, intermediate_size=4 * hidden,
                                                      num_attention_heads=hidden // 64)

    def facts(self, config: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((k, getattr(config, k)) for k in ("hidden_size", "num_hidden_layers", "patch_size",
                                                        "image_size", "projection_dim"))

    def wrap(self, net: nn.Module, encoder: EncoderConfig) -> nn.Module:
        return ClipFrames(net, encoder.frame_subset, encoder.clip_embedding)

    def out_dim(self, config: Any, encoder: EncoderConfig) -> int:
        return config.projection_dim if encoder.clip_embedding == "projected" else config.hidden_size

    def inputs(self, processor: Any, config: Any, encoder: EncoderConfig) -> dict[str, Any]:
        sampling = image_sampling(processor, CLIP_FRAMES)
        if sampling.size != config.image_size:
            raise CavnetError(f"the image processor crops {sampling.size} px, the CLIP tower takes "
                              f"{config.image_size} px")
        return {"sampling": sampling}

    def describe(self, config: Any) -> str:
        return (f"CLIP ViT/{config.patch_size} at {config.image_size} px, hidden {config.hidden_size} x "
                f"{config.num_hidden_layers} layers, projection {config.projection_dim}")


CLIP = ClipFamily()
_EVL = "Lin et al. 2022, EVL, github.com/OpenGVLab/efficient-video-recognition"
register_family(CLIP, [
    ("clip-vit-b16", "openai/clip-vit-base-patch16",
     {"hidden_size": 768, "num_hidden_layers": 12, "patch_size": 16, "image_size": 224, "projection_dim": 512}, 512,
     "CLIP ViT-B/16 image tower on each frame, frame embeddings averaged per clip",
     f"Kinetics-400 top-1 82.9: frozen, EVL decoder, 8 frames ({_EVL})"),
    ("clip-vit-b32", "openai/clip-vit-base-patch32",
     {"hidden_size": 768, "num_hidden_layers": 12, "patch_size": 32, "image_size": 224, "projection_dim": 512}, 512,
     "CLIP ViT-B/32 image tower on each frame, frame embeddings averaged per clip",
     "Kinetics-400 top-1 80.4: X-CLIP B/32, fine-tuned, 8 frames (Ni et al. 2022, microsoft/xclip-base-patch32)"),
    ("clip-vit-l14", "openai/clip-vit-large-patch14",
     {"hidden_size": 1024, "num_hidden_layers": 24, "patch_size": 14, "image_size": 224, "projection_dim": 768}, 768,
     "CLIP ViT-L/14 image tower on each frame, frame embeddings averaged per clip",
     f"Kinetics-400 top-1 86.3: frozen, EVL decoder, 8 frames ({_EVL})"),
])
