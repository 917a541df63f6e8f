"""The Audio Spectrogram Transformer on each audio segment: ``(B, 1, frames, bins)`` -> ``(B, hidden)``.

The input is exactly what the folder's ``ASTFeatureExtractor`` makes of the segment's window (Kaldi fbank,
128 bins, padded or cut to ``max_length`` frames, normalised with the release's mean and std); the
descriptor is ``ASTModel``'s pooled output, the mean of its two class tokens, which the release's
classifier reads (its head's own LayerNorm and dense layer are dropped).

Windowing (cavnet's choice, :mod:`cavnet.extract.media.frontends`): a segment is one model input of
``max_length`` x 10 ms = 10.24 s (``--audio-window`` shortens it), placed like cavnet's log-mel examples,
centred on its clip when the video holds as many windows as clips, else spread uniformly; shorter audio is
padded by the extractor itself. A 10 s Kinetics clip is one segment: one forward pass, not ten of the same
audio.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones.hf.family import Family, register_family, transformers_class
from cavnet.extract.config import EncoderConfig, LogMel

KALDI_SHIFT_S = 0.010  # torchaudio's Kaldi fbank frame shift, which ASTFeatureExtractor keeps


class ASTSegments(nn.Module):
    """``net``: an ``ASTModel``; examples ``(B, 1, frames, bins)`` -> ``(B, hidden)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        return self.net(input_values=examples[:, 0]).pooler_output


def extractor_fields(processor: Any, shape: tuple[int, int], window: float, native: float, what: str
                     ) -> dict[str, Any]:
    """The store config's audio fields for a feature extractor: its settings as JSON (every decode process
    rebuilds it from them), the sample rate and example shape in ``logmel``, the window in seconds."""
    import json

    if window > native + 1e-9:
        raise CavnetError(f"--audio-window {window:g}: {what} takes at most {native:g} s of audio")
    plain = (str, int, float, bool, list, type(None))
    settings = {k: v for k, v in processor.to_dict().items() if isinstance(v, plain)}
    logmel = LogMel(sample_rate=int(processor.sampling_rate), example_frames=shape[0], n_mels=shape[1])
    return {"logmel": logmel, "extractor": json.dumps(settings, sort_keys=True), "audio_window": window or native}


class ASTFamily(Family):
    name, modality = "AST", "audio"
    model_types = ("audio-spectrogram-transformer",)
    processor, hf_class, any_name = "ASTFeatureExtractor", "ASTModel", "ast-any"

    def default_config(self, facts: dict[str, Any]) -> Any:
        hidden = facts["hidden_size"]
        return transformers_class("ASTConfig")(**facts, intermediate_size=4 * hidden, num_attention_heads=hidden // 64)

    def facts(self, config: Any) -> tuple[tuple[str, Any], ...]:
        return tuple((k, getattr(config, k)) for k in ("hidden_size", "num_hidden_layers", "patch_size",
                                                        "frequency_stride", "time_stride", "max_length",
                                                        "num_mel_bins"))

    def wrap(self, net: nn.Module, encoder: EncoderConfig) -> nn.Module:
        return ASTSegments(net)

    def out_dim(self, config: Any, encoder: EncoderConfig) -> int:
        return config.hidden_size

    def inputs(self, processor: Any, config: Any, encoder: EncoderConfig) -> dict[str, Any]:
        made, takes = (processor.max_length, processor.num_mel_bins), (config.max_length, config.num_mel_bins)
        if made != takes:
            raise CavnetError(f"the feature extractor makes {made[0]} x {made[1]} fbank frames x bins, the AST "
                              f"model takes {takes[0]} x {takes[1]}")
        return extractor_fields(processor, made, encoder.audio_window, processor.max_length * KALDI_SHIFT_S, "AST")

    def describe(self, config: Any) -> str:
        return (f"AST {config.max_length} frames x {config.num_mel_bins} bins, patch {config.patch_size} stride "
                f"{config.frequency_stride}/{config.time_stride}, hidden {config.hidden_size} x "
                f"{config.num_hidden_layers} layers")


AST = ASTFamily()
register_family(AST, [
    ("ast", "MIT/ast-finetuned-audioset-10-10-0.4593",
     {"hidden_size": 768, "num_hidden_layers": 12, "patch_size": 16, "frequency_stride": 10, "time_stride": 10,
      "max_length": 1024, "num_mel_bins": 128}, 768,
     "Audio Spectrogram Transformer (AudioSet), one 10.24 s window per segment",
     "AudioSet mAP 0.459: full AudioSet, strides 10/10, weight averaging (Gong et al. 2021, "
     "github.com/YuanGongND/ast)"),
])
