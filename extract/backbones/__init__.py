"""Backbone registry and factory (timm style): ``@register(...)`` on a builder, ``create_backbone(name)``.

Visual backbones map clips ``(B, 3, T, H, W)`` float to ``(B, D)``; audio backbones map log-mel
examples ``(B, 1, frames, mels)`` to ``(B, D)``. Each spec carries the input its network expects (the clip
sampling and normalisation of a visual one, the log-mel front end of an audio one) and, when there are
published weights, where they come from (:class:`Release`). Builders open no files; weights are loaded apart
(``cavnet.extract.backbones.weights``, ``cavnet.extract.backbones.pretrained``).

Foundation encoders from Hugging Face folders (CLIP, VideoMAE, AST, CLAP: :mod:`cavnet.extract.backbones.hf`)
carry ``hf`` instead of a fixed input: their preprocessing and size come from the folder, so a store's
feature widths are :func:`feature_dim` of its config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

from torch import nn

from cavnet.extract.config import ClipSampling, ExtractConfig, LogMel

if TYPE_CHECKING:
    from cavnet.extract.backbones.hf.family import HFModel

Modality = Literal["visual", "audio"]


@dataclass(frozen=True)
class Release:
    """Published weights of a backbone.

    ``name``: what the store config records when a file is this release (e.g. ``torchvision
    R2Plus1D_18_Weights.KINETICS400_V1``); ``file``: the file name its publisher uses (torch.hub saves it
    under that name); ``sha256_prefix``: the hash prefix torch.hub file names carry ("" when none);
    ``hub_cache``: looked up in torch.hub's checkpoint folder when no file is given (torchvision's weights);
    ``metrics``: published accuracy, e.g. ``(("Kinetics-400 top-1", 67.463),)``; ``companion``: a second
    file that must lie beside it.
    """

    name: str
    file: str
    url: str
    sha256_prefix: str = ""
    hub_cache: bool = False
    metrics: tuple[tuple[str, float], ...] = ()
    companion: str | None = None


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    modality: Modality
    out_dim: int
    builder: Callable[[], nn.Module]
    logmel: LogMel | None = None  # the front end an audio backbone expects
    description: str = ""
    sampling: ClipSampling | None = None  # the clips a visual backbone expects (``clips`` is the caller's)
    release: Release | None = None
    hf: "HFModel | None" = None  # a Hugging Face encoder: family, release id, the size the name stands for


_REGISTRY: dict[str, BackboneSpec] = {}


def register(name: str, modality: Modality, out_dim: int, logmel: LogMel | None = None,
             description: str = "", sampling: ClipSampling | None = None, release: Release | None = None,
             hf: Any = None) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register ``builder`` under ``name``. A visual backbone without ``sampling`` takes the 3D-ResNeXt
    recipe (:class:`ClipSampling` defaults); a Hugging Face encoder (``hf``) takes its input from its folder."""
    def wrap(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        if modality == "audio" and logmel is None and hf is None:
            raise ValueError(f"audio backbone {name!r} needs its log-mel front end")
        clips = (sampling or ClipSampling()) if modality == "visual" and hf is None else sampling
        _REGISTRY[name] = BackboneSpec(name, modality, out_dim, builder, logmel, description, clips, release, hf)
        return builder
    return wrap


def get_spec(name: str) -> BackboneSpec:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_backbones(modality: Modality | None = None) -> list[str]:
    _load_all()
    return sorted(n for n, s in _REGISTRY.items() if modality is None or s.modality == modality)


def create_backbone(name: str) -> nn.Module:
    """A randomly initialised backbone in eval mode; ``module.out_dim`` is its output width."""
    spec = get_spec(name)
    model = spec.builder()
    model.out_dim = spec.out_dim
    return model.eval()


def feature_dim(config: ExtractConfig, modality: Modality) -> int:
    """The width of ``config``'s ``modality`` features: what its folder's config gave (recorded by extract
    for the Hugging Face encoders), else the registry's."""
    recorded = config.encoder.visual_dim if modality == "visual" else config.encoder.audio_dim
    return recorded or get_spec(config.visual if modality == "visual" else config.audio).out_dim


def _load_all() -> None:
    # Importing the model files runs their @register decorators (the hf ones import no transformers).
    from cavnet.extract.backbones import audio_cnn, cnn14, resnext3d, video_tv  # noqa: F401
    from cavnet.extract.backbones.hf import ast, clap, clip, videomae  # noqa: F401
