"""A Hugging Face encoder family and the sizes cavnet registers for it, without importing transformers.

A registered name (``clip-vit-b16``) is a family, the size it stands for (``facts``: the config fields that
define the architecture) and the Hub release of that size. The folder's ``config.json`` decides what is loaded,
and the store names it truly:

- a folder of another family (a VideoMAE folder for ``clip-vit-b16``) is refused;
- a folder of the family is recorded under the registered name whose size it has (``clip-vit-b16`` given a
  ViT-L/14 folder is recorded as ``clip-vit-l14``), or under the family's ``-any`` name when it has none of
  the registered sizes (a re-trained variant, the tests' tiny models).

So ``clip-vit-b16`` in a store always means a ViT-B/16. Without a folder a registered size can be built with
random weights (asked for with ``--random-init``; the bench does it); an ``-any`` name needs a folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones import Modality, get_spec, list_backbones, register
from cavnet.extract.config import EncoderConfig


def transformers_class(name: str) -> Any:
    """``transformers.<name>``, imported on first use with transformers' progress bars and load reports
    silenced (cavnet reports what matters itself)."""
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return getattr(transformers, name)


def extractor_settings(encoder: EncoderConfig) -> dict[str, Any]:
    """The recorded audio feature extractor's settings (``encoder.extractor``), {} when there are none."""
    return json.loads(encoder.extractor) if encoder.extractor else {}


class Family:
    """One kind of encoder: which folders it takes and how its cavnet module is made.

    ``model_types``: the ``config.json`` ``model_type`` values it accepts; ``processor``: the transformers
    class that reads the folder's preprocessor settings; ``hf_class``: the transformers class loaded from
    the folder (its state dict keys are the release's); ``any_name``: the registered name of any size;
    ``text_kind``: the ``--text-model KIND:`` of the same checkpoint's text tower ("" when it has none).
    Subclasses define the rest (``sub_config`` ... ``describe``).
    """

    name = ""
    modality: Modality = "visual"
    model_types: tuple[str, ...] = ()
    processor = ""
    hf_class = ""
    any_name = ""
    text_kind = ""
    missing_ok: tuple[str, ...] = ()  # key prefixes the folder may lack (a classifier cavnet drops)

    def sub_config(self, config: Any) -> Any:
        """The config ``hf_class`` is built from, given the folder's (the whole model's) config."""
        return config

    def default_config(self, facts: dict[str, Any]) -> Any:
        """The config of a registered size (random initialisation)."""
        raise NotImplementedError

    def facts(self, config: Any) -> tuple[tuple[str, Any], ...]:
        """The fields of ``sub_config`` that define the size."""
        raise NotImplementedError

    def wrap(self, net: nn.Module, encoder: EncoderConfig) -> nn.Module:
        """cavnet's backbone around the transformers model ``net``."""
        raise NotImplementedError

    def out_dim(self, config: Any, encoder: EncoderConfig) -> int:
        raise NotImplementedError

    def inputs(self, processor: Any, config: Any, encoder: EncoderConfig) -> dict[str, Any]:
        """The store config's preprocessing fields (``sampling`` or ``logmel`` and ``extractor``) from the
        processor the folder holds (or the class defaults for random weights); raises CavnetError when the
        processor does not fit the model."""
        raise NotImplementedError

    def describe(self, config: Any) -> str:
        raise NotImplementedError

    def default_processor(self, config: Any) -> dict[str, Any]:
        """Settings over the processor class's defaults for random weights (no folder to read them from)."""
        return {}

    def build(self, config: Any, encoder: EncoderConfig) -> nn.Module:
        """A randomly initialised backbone of ``config``'s size (no I/O)."""
        return self.wrap(transformers_class(self.hf_class)(config).eval(), encoder)

    def name_for(self, config: Any) -> str:
        """The registered name of ``config``'s size in this family, else ``any_name``."""
        facts = self.facts(config)
        for name in list_backbones(self.modality):
            hf = get_spec(name).hf
            if hf is not None and hf.family is self and hf.facts and dict(hf.facts) == dict(facts):
                return name
        return self.any_name


@dataclass(frozen=True)
class HFModel:
    """A registered encoder: its family, the Hub release of its size (``model_id``; "" for ``-any``), the
    size (``facts``; () for ``-any``) and a published figure of that release with its source."""

    family: Family
    model_id: str = ""
    facts: tuple[tuple[str, Any], ...] = ()
    published: str = ""


def register_family(family: Family, sizes: list[tuple[str, str, dict[str, Any], int, str, str]]) -> None:
    """Register ``(name, model_id, facts, out_dim, description, published)`` sizes of ``family``, and its
    ``-any`` name (its width comes from the folder; building it without one is refused)."""
    for name, model_id, facts, out_dim, description, published in sizes:
        key = tuple(facts.items())
        register(name, family.modality, out_dim, description=description,
                 hf=HFModel(family, model_id, key, published))(
            lambda facts=facts: family.build(family.default_config(facts), EncoderConfig()))

    def needs_folder() -> nn.Module:
        raise CavnetError(f"{family.any_name} takes its size from a folder: pass --{family.modality}-weights DIR")

    register(family.any_name, family.modality, 0, hf=HFModel(family),
             description=f"{family.name} of the size the folder's config.json gives")(needs_folder)
