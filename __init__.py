"""cavnet: CAV-Net audio-visual action recognition over a cached HDF5 feature store.

The public API (see docs/api.md) is imported lazily: ``import cavnet`` imports no torch, and the first use
of a name below imports the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FeatureStore": ("cavnet.extract.store.reader", "FeatureStore"),
    "open_store": ("cavnet.extract.store.reader", "FeatureStore"),
    "StoreDataset": ("cavnet.extract.store.dataset", "StoreDataset"),
    "ExtractConfig": ("cavnet.extract.config", "ExtractConfig"),
    "extract_features": ("cavnet.extract.embed", "embed_files"),
    "Checkpoint": ("cavnet.fuse.checkpoint", "Checkpoint"),
    "load_checkpoint": ("cavnet.fuse.checkpoint", "Checkpoint.load"),
    "Predictor": ("cavnet.finetune.predict", "Predictor"),
    "Prediction": ("cavnet.finetune.predict", "Prediction"),
    "predict": ("cavnet.pipelines.predict", "predict"),
    "export_store": ("cavnet.pipelines.export", "export_store"),
    "CavnetError": ("cavnet.errors", "CavnetError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cavnet' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
