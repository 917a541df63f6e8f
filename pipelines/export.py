"""export, wired: a store's features as per-video ``.npy`` files or a Parquet table (``cavnet.export_store``)."""

from __future__ import annotations

from pathlib import Path

from cavnet.configs import check_choice
from cavnet.extract.files.outputs import Output, check_outputs, claim_folder, writing
from cavnet.extract.store.export import FORMATS, export_npy, export_parquet
from cavnet.extract.store.reader import FeatureStore


def export_store(store: str | Path, out: str | Path, format: str = "npy") -> int:
    """Export every row of ``store`` into folder ``out``; returns the number of videos written. ``out`` must
    be empty, or an export of the same store in the same format (it is then written again)."""
    check_choice("--format", format, FORMATS)
    out = Path(out)
    key = {"store": str(Path(store).resolve()), "format": format}
    check_outputs([Output(out, "--out", folder=True)], inputs=[Path(store)], command="export", key=key)
    with FeatureStore(store) as s, writing(out, "--out"):
        claim_folder(out, "export", key)
        return (export_npy if format == "npy" else export_parquet)(s, out)
