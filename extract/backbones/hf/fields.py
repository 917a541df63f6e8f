"""What a store config records for the Hugging Face encoders: the name of the size the folder really is,
the preprocessing its processor asks for, the feature widths and the architecture in words.

Random weights (no folder) take the registered size and the processor class's defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cavnet.extract.backbones import BackboneSpec
from cavnet.extract.backbones.hf.family import transformers_class
from cavnet.extract.backbones.hf.folder import load_config, load_processor
from cavnet.extract.config import EncoderConfig


def _read(spec: BackboneSpec, folder: str | None) -> tuple[str, Any, Any]:
    """(the name to record, the model config, the processor) of ``spec`` with ``folder`` (or at random)."""
    family = spec.hf.family
    if folder is None:
        config = family.default_config(dict(spec.hf.facts))
        return spec.name, config, transformers_class(family.processor)(**family.default_processor(config))
    what = f"{spec.modality} weights"
    config = load_config(family, Path(folder), what)
    return family.name_for(config), config, load_processor(family, Path(folder), what)


def encoder_fields(visual: BackboneSpec, visual_folder: str | None, audio: BackboneSpec, audio_folder: str | None,
                   clips: int, encoder: EncoderConfig) -> dict[str, Any]:
    """ExtractConfig fields for the encoders among ``visual`` / ``audio`` (those with ``hf``): ``visual`` /
    ``audio`` (the recorded name), ``sampling`` / ``logmel`` and ``encoder`` (``encoder`` with the widths,
    architectures and extractor settings filled in)."""
    out: dict[str, Any] = {}
    recorded: dict[str, Any] = {}
    for spec, folder in ((visual, visual_folder), (audio, audio_folder)):
        if spec.hf is None:
            continue
        family = spec.hf.family
        name, config, processor = _read(spec, folder)
        inputs = family.inputs(processor, config, encoder)
        out[spec.modality] = name
        recorded[f"{spec.modality}_dim"] = family.out_dim(config, encoder)
        recorded[f"{spec.modality}_arch"] = family.describe(config)
        if spec.modality == "visual":
            out["sampling"] = dataclasses.replace(inputs["sampling"], clips=clips)
        else:
            out["logmel"] = inputs["logmel"]
            recorded.update(extractor=inputs["extractor"], audio_window=inputs["audio_window"])
    out["encoder"] = dataclasses.replace(encoder, **recorded)
    return out
