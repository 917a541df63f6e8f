"""Backbone registry and factory (timm style): ``@register(...)`` on a builder, ``create_backbone(name)``.

Visual backbones map clips ``(B, 3, T, H, W)`` float to ``(B, D)``; audio backbones map log-mel
examples ``(B, 1, frames, mels)`` to ``(B, D)``. Builders open no files; weights are loaded apart
(``cavnet.extract.backbones.weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from torch import nn

from cavnet.extract.config import LogMel

Modality = Literal["visual", "audio"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    modality: Modality
    out_dim: int
    builder: Callable[[], nn.Module]
    logmel: LogMel | None = None  # the front end an audio backbone expects
    description: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}


def register(name: str, modality: Modality, out_dim: int, logmel: LogMel | None = None,
             description: str = "") -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    def wrap(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        if modality == "audio" and logmel is None:
            raise ValueError(f"audio backbone {name!r} needs its log-mel front end")
        _REGISTRY[name] = BackboneSpec(name, modality, out_dim, builder, logmel, description)
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


def _load_all() -> None:
    # Importing the model files runs their @register decorators.
    from cavnet.extract.backbones import audio_cnn, resnext3d  # noqa: F401
