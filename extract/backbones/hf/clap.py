"""CLAP's audio tower (HTSAT) on each audio segment: ``(B, 1, frames, 64)`` -> ``(B, projection)``.

The input is what the folder's ``ClapFeatureExtractor`` makes of the segment's window (48 kHz, 64 mel bins,
10 s, its ``padding`` for shorter audio); the descriptor is ``ClapModel.get_audio_features``: the tower's
pooled output through ``audio_projection``, L2-normalised.

A window is never longer than the extractor's ``max_length_s``, so the extractor takes its deterministic
path (no random crop). With ``truncation="fusion"`` it stacks four copies of the same mel and, called on one
window, marks it ``is_longer``; cavnet ships one copy and rebuilds the four and the flag here, which gives
the model exactly that input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones.hf.ast import extractor_fields
from cavnet.extract.backbones.hf.family import Family, extractor_settings, register_family, transformers_class
from cavnet.extract.config import EncoderConfig


class ClapSegments(nn.Module):
    """``net``: a ``ClapAudioModelWithProjection``; examples ``(B, 1, frames, bins)`` -> ``(B, projection)``
    unit rows. ``fusion``: the extractor's fusion input (four channels, ``is_longer`` set)."""

    def __init__(self, net: nn.Module, fusion: bool = False) -> None:
        super().__init__()
        self.net, self.fusion = net, fusion

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = examples.repeat(1, 4, 1, 1) if self.fusion else examples
        longer = torch.full((x.shape[0], 1), self.fusion, dtype=torch.bool, device=x.device)
        pooled = self.net.audio_model(input_features=x, is_longer=longer).pooler_output
        return nn.functional.normalize(self.net.audio_projection(pooled), dim=-1)


class ClapFamily(Family):
    name, modality = "CLAP audio tower", "audio"
    model_types = ("clap", "clap_audio_model")
    processor, hf_class, any_name = "ClapFeatureExtractor", "ClapAudioModelWithProjection", "clap-any"
    text_kind = "clap"

    def sub_config(self, config: Any) -> Any:
        return config.audio_config if config.model_type == "clap" else config

    def default_config(self, facts: dict[str, Any]) -> Any:
        return transformers_class("ClapAudioConfig")(**facts)

    def facts(self, config: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in (
            (k, getattr(config, k)) for k in ("patch_embeds_hidden_size", "depths", "spec_size", "num_mel_bins",
                                              "enable_fusion", "projection_dim")))

    def wrap(self, net: nn.Module, encoder: EncoderConfig) -> nn.Module:
        settings = extractor_settings(encoder)
        return ClapSegments(net, settings.get("truncation", "fusion" if net.config.enable_fusion else "")
                            == "fusion")

    def out_dim(self, config: Any, encoder: EncoderConfig) -> int:
        return config.projection_dim

    def inputs(self, processor: Any, config: Any, encoder: EncoderConfig) -> dict[str, Any]:
        if processor.truncation == "fusion" and not config.enable_fusion:
            raise CavnetError("the feature extractor makes fusion input (truncation 'fusion', four channels), the "
                              "CLAP model has no fusion (enable_fusion false)")
        if processor.feature_size != config.num_mel_bins:
            raise CavnetError(f"the feature extractor makes {processor.feature_size} mel bins, the CLAP model takes "
                              f"{config.num_mel_bins}")
        frames = processor.nb_max_samples // processor.hop_length + 1
        return extractor_fields(processor, (frames, processor.feature_size), encoder.audio_window,
                                float(processor.max_length_s), "CLAP")

    def default_processor(self, config: Any) -> dict[str, Any]:
        return {} if config.enable_fusion else {"truncation": "rand_trunc"}  # one channel, as the model takes

    def describe(self, config: Any) -> str:
        fusion = "fusion" if config.enable_fusion else "no fusion"
        return (f"CLAP HTSAT {config.num_mel_bins} mel bins, spec {config.spec_size}, width "
                f"{config.patch_embeds_hidden_size}, depths {tuple(config.depths)}, {fusion}, projection "
                f"{config.projection_dim}")


CLAP = ClapFamily()
_HTSAT = {"patch_embeds_hidden_size": 96, "depths": (2, 2, 6, 2), "spec_size": 256, "num_mel_bins": 64,
          "projection_dim": 512}
register_family(CLAP, [
    ("clap-htsat", "laion/clap-htsat-unfused", {**_HTSAT, "enable_fusion": False}, 512,
     "LAION-CLAP HTSAT audio tower (no fusion), projected embedding per segment", ""),
    ("clap-htsat-fused", "laion/clap-htsat-fused", {**_HTSAT, "enable_fusion": True}, 512,
     "LAION-CLAP HTSAT audio tower (feature fusion), projected embedding per segment", ""),
])
