"""A feature store to plain files: per-video ``.npy`` files, or one Parquet table of pooled features.

npy, in video_features' naming (``{video_id}_{feature}.npy``): ``{id}_visual.npy`` (n, Dv) and
``{id}_audio.npy`` (m, Da) as stored (float16, padded rows included), ``{id}_visual_mask.npy`` (n,) and
``{id}_audio_mask.npy`` (m,) bool, ``{id}_text.npy`` (Dt,); plus ``videos.csv`` (row, id, split, label,
label_name, status, path) listing every row. Parquet: one row per video with those columns and the masked
means of its clips and segments (``visual`` (Dv,), ``audio`` (Da,), float32; zeros when it has none) and
its ``text`` embedding; it needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np

from cavnet.errors import CavnetError
from cavnet.extract.files.outputs import atomic
from cavnet.extract.store.reader import FeatureStore

FORMATS = ("npy", "parquet")
_COLUMNS = ("id", "split", "label", "label_name", "status", "path")


def _blocks(store: FeatureStore) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    step = max(1, int(store.chunk_rows)) * 4
    for lo in range(0, store.num_videos, step):
        yield lo, store.block(lo, min(store.num_videos, lo + step))


def _meta(store: FeatureStore, b: dict[str, np.ndarray], i: int) -> dict[str, object]:
    label = int(b["videos/label"][i])
    return {"id": str(b["videos/id"][i]), "split": str(b["videos/split"][i]), "label": label,
            "label_name": store.class_names[label] if label >= 0 else "", "status": str(b["videos/status"][i]),
            "path": str(b["videos/path"][i])}


def pooled(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over axis 1: (B, k, D), (B, k) -> (B, D) float32 (zeros where nothing is masked in)."""
    m = mask.astype(np.float32)[..., None]
    return (features.astype(np.float32) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def export_npy(store: FeatureStore, out: Path) -> int:
    """Write the per-video files of every row (each whole or not at all); returns the number of videos."""
    out.mkdir(parents=True, exist_ok=True)
    ids: set[str] = set()
    with atomic(out / "videos.csv", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", *_COLUMNS])
        for lo, b in _blocks(store):
            for i in range(len(b["videos/id"])):
                meta = _meta(store, b, i)
                vid = meta["id"]
                if vid in ids or "/" in vid or vid in ("", ".", ".."):
                    raise CavnetError(f"{store.path}: video id {vid!r} cannot name a file (duplicate or a path)")
                ids.add(vid)
                views = (("visual/views", "visual_views"),) if "visual/views" in b else ()  # (n, V, Dv)
                for key, name in (("visual/clips", "visual"), ("visual/mask", "visual_mask"), *views,
                                  ("audio/segments", "audio"), ("audio/mask", "audio_mask"), ("text/video", "text")):
                    with atomic(out / f"{vid}_{name}.npy", mode="wb", sync=False) as npy:
                        np.save(npy, b[key][i])
                w.writerow([lo + i, *(meta[c] for c in _COLUMNS)])
    return store.num_videos


def export_parquet(store: FeatureStore, out: Path) -> int:
    """Write ``out/videos.parquet``; returns the number of videos."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CavnetError("--format parquet needs pyarrow: pip install 'cavnet[parquet]'") from None
    cols: dict[str, list] = {c: [] for c in (*_COLUMNS, "visual", "audio", "text")}
    for _, b in _blocks(store):
        for i in range(len(b["videos/id"])):
            for c, v in _meta(store, b, i).items():
                cols[c].append(v)
        cols["visual"] += list(pooled(b["visual/clips"], b["visual/mask"]))
        cols["audio"] += list(pooled(b["audio/segments"], b["audio/mask"]))
        cols["text"] += list(b["text/video"].astype(np.float32))
    arrays = {c: (pa.array([np.asarray(v, np.float32) for v in vals], type=pa.list_(pa.float32()))
                  if c in ("visual", "audio", "text") else pa.array(vals)) for c, vals in cols.items()}
    out.mkdir(parents=True, exist_ok=True)
    with atomic(out / "videos.parquet", mode="wb") as fh:
        pq.write_table(pa.table(arrays), fh)
    return store.num_videos
