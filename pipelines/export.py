"""export, wired: a store's features as per-video ``.npy`` files or a Parquet table (``cavnet.export_store``)."""

from __future__ import annotations

from pathlib import Path

from cavnet.configs import check_choice
from cavnet.extract.store.export import FORMATS, export_npy, export_parquet
from cavnet.extract.store.reader import FeatureStore


def export_store(store: str | Path, out: str | Path, format: str = "npy") -> int:
    """Export every row of ``store`` into folder ``out``; returns the number of videos written."""
    check_choice("--format", format, FORMATS)
    with FeatureStore(store) as s:
        return (export_npy if format == "npy" else export_parquet)(s, Path(out))
