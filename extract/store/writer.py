"""The HDF5 feature store, format version 2 (docs/store.md): shard files, consolidation and reading.

Format 2 added the spatial views: ``visual/views`` (N, n, V, Dv) when a store holds V > 1 views per clip
(``visual/clips`` stays the centre view), the root attributes ``views``, ``crops`` and ``flip``, and
``views`` in ``dims``. A format-1 store is a format-2 store of one view; the reader takes both.

A shard holds the rows ``[start, start + count)`` of the manifest. It is written to a ``.tmp`` name,
flushed, fsynced and ``os.replace``d: the final name is the commit, so a shard either exists whole or
not at all. ``consolidate`` copies the shards, in manifest order, into the one store file (also
tmp + rename) together with the text embeddings and the configuration.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.store.fsfault import as_os_error, h5_dealloc_errors

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1: before spatial views, read as one view
_STR = h5py.string_dtype("utf-8")
_ROW_FIELDS = ("id", "split", "path", "status", "error")


class StoreError(CavnetError):
    """A store or shard that is missing, malformed, or does not match what the caller needs."""


@dataclass(frozen=True)
class StoreDims:
    """Fixed per-store sizes: ``clips`` n, ``segments`` m, feature widths Dv, Da, ``views`` V spatial views
    per clip (format 1 stores have none recorded: 1)."""

    clips: int
    segments: int
    visual_dim: int
    audio_dim: int
    views: int = 1


@dataclass
class VideoFeatures:
    """What stage one made of one video: ``visual`` (n_valid, Dv) the centre view, ``audio`` (m_valid, Da)
    float32; ``views`` (n_valid, V, Dv) every spatial view when V > 1, else None."""

    status: str
    error: str
    duration: float
    fps: float
    visual: np.ndarray
    audio: np.ndarray
    views: np.ndarray | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: Path) -> Path:
    """A tmp name beside ``path``, unique to each call: two runs of one task never share a tmp file."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def stray_tmp_files(path: Path) -> list[Path]:
    """Leftovers of writers of ``path`` that died before their rename (``{name}.*.tmp`` and ``{name}.tmp``)."""
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.iterdir()
            if p.name.startswith(path.name + ".") and p.name.endswith(".tmp") and p.is_file()]


CommitHook = Callable[[str], None]  # called with the final path after writing, before the commit


def commit_h5(path: Path, write: Callable[[h5py.File], None], before_commit: CommitHook | None = None) -> None:
    """Write an HDF5 file atomically: ``write(h5file)`` on a tmp name, fsync, rename onto ``path``.
    ``before_commit(path)`` runs between the write and the rename (the reliability tests' fault hooks).

    Whatever fails (a full disk included), the tmp file is removed and ``path`` is left as it was.
    """
    tmp = tmp_name(path)
    with h5_dealloc_errors() as freed:
        try:
            with h5py.File(tmp, "w") as f:
                write(f)
                f.flush()
            if before_commit is not None:
                before_commit(str(path))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            if freed and not (isinstance(exc, OSError) and exc.errno):
                exc = RuntimeError(f"{exc}; {freed[0]}")  # the errno is in h5py's freeing errors
            error = as_os_error(exc, path)  # before the unlink frees the space a full disk lacked
            tmp.unlink(missing_ok=True)
            if error is exc:
                raise
            raise error from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)


def _pad(rows: Sequence[np.ndarray], length: int, *dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length ``(k_i, *dim)`` arrays into ``(N, length, *dim)`` float16 and a ``(N, length)``
    mask."""
    out = np.zeros((len(rows), length, *dim), np.float16)
    mask = np.zeros((len(rows), length), bool)
    for i, arr in enumerate(rows):
        k = min(len(arr), length)
        if k:
            out[i, :k] = arr[:k]
            mask[i, :k] = True
    return out, mask


def write_shard(path: Path, start: int, rows: Sequence[ManifestRow], feats: Sequence[VideoFeatures],
                dims: StoreDims, config_json: str, before_commit: CommitHook | None = None) -> None:
    """Commit one shard file holding manifest rows ``start .. start + len(rows)``."""
    if len(rows) != len(feats):
        raise ValueError("one VideoFeatures per manifest row")
    visual, vmask = _pad([f.visual for f in feats], dims.clips, dims.visual_dim)
    audio, amask = _pad([f.audio for f in feats], dims.segments, dims.audio_dim)
    views = (_pad([_views_of(x, dims) for x in feats], dims.clips, dims.views, dims.visual_dim)[0]
             if dims.views > 1 else None)

    def write(f: h5py.File) -> None:
        f.attrs.update(format_version=FORMAT_VERSION, config=config_json, start=start, count=len(rows))
        if views is not None:
            f["visual/views"] = views
        f["videos/id"] = np.array([r.video_id for r in rows], dtype=object).astype(_STR)
        f.create_dataset("videos/status", data=[x.status for x in feats], dtype=_STR)
        f.create_dataset("videos/error", data=[x.error for x in feats], dtype=_STR)
        f["videos/duration"] = np.array([x.duration for x in feats], np.float32)
        f["videos/fps"] = np.array([x.fps for x in feats], np.float32)
        f["visual/clips"], f["visual/mask"] = visual, vmask
        f["audio/segments"], f["audio/mask"] = audio, amask

    commit_h5(path, write, before_commit)


def _views_of(feats: VideoFeatures, dims: StoreDims) -> np.ndarray:
    """``(k, V, Dv)`` every view of a video's clips (a failed video has none)."""
    if feats.views is not None and feats.views.shape[1:] == (dims.views, dims.visual_dim):
        return feats.views
    if len(feats.visual) == 0:
        return np.zeros((0, dims.views, dims.visual_dim), np.float32)
    raise ValueError(f"{len(feats.visual)} clips without their {dims.views} views")


def view_attrs(config_json: str, dims: StoreDims) -> dict[str, object]:
    """The root attributes that say a store's spatial views: ``views`` V, ``crops`` along the long side,
    ``flip``."""
    spec = json.loads(config_json).get("views") or {}
    return {"views": dims.views, "crops": int(spec.get("crops", 1)), "flip": bool(spec.get("flip", False))}


def read_shard(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one committed shard, keyed by dataset path (``visual/clips`` ...)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        out["start"] = np.int64(f.attrs["start"])
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    for key in ("videos/id", "videos/status", "videos/error"):
        out[key] = np.array([_text(s) for s in out[key]], dtype=object)
    return out


def shard_statuses(path: Path, start: int, ids: Sequence[str]) -> list[str] | None:
    """The statuses of a committed shard that holds exactly the rows ``ids`` from ``start``; None when the
    file is unreadable or holds other rows (it is then to be redone)."""
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs["start"]) != start or int(f.attrs["count"]) != len(ids):
                return None
            if [_text(s) for s in f["videos/id"][()]] != list(ids):
                return None
            return [_text(s) for s in f["videos/status"][()]]
    except (OSError, KeyError, ValueError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class TextTables:
    """Label texts and embeddings ``(C, Dt)``, and one embedding per video ``(N, Dt)``; ``video_strings``
    (N,): the string each video's row of ``video_embedding`` embeds ("" for a zero row), stored as
    ``text/string`` so the sentence encoder can be fine-tuned later (None: not stored)."""

    class_names: Sequence[str]
    class_prompts: Sequence[str]
    class_embedding: np.ndarray
    video_embedding: np.ndarray
    text_model: str
    video_strings: Sequence[str] | None = None


def consolidate(out: Path, shards: Sequence[Path], manifest: Manifest, dims: StoreDims, texts: TextTables,
                config_json: str, version: str, before_commit: CommitHook | None = None,
                base: Path | None = None) -> None:
    """Copy committed shards (covering every manifest row exactly once) into the store ``out``.

    ``base``: a store being grown. Its rows come first, where they were, and ``manifest`` lists its videos
    first (in its order, with their labels and splits as the new corpus says), then the new videos, which
    the shards hold (shard row ``i`` is manifest row ``len(base) + i``); ``texts.video_embedding`` then
    covers only the new videos, the base's texts are copied (``text/string`` is written only when the
    base has it too, else the grown store, like its base, predates stored texts; the base's text sets are
    kept when the class table stays the same).
    """
    n = len(manifest)
    chunk_rows = max(1, min(64, n))
    n_base = _num_videos(base) if base is not None else 0

    def write(f: h5py.File) -> None:
        f.attrs.update(format_version=FORMAT_VERSION, cavnet_version=version, config=config_json,
                       text_model=texts.text_model, dims=json.dumps(dims.__dict__), num_videos=n,
                       **view_attrs(config_json, dims))
        rows = manifest.rows
        f.create_dataset("videos/id", data=[r.video_id for r in rows], dtype=_STR)
        f.create_dataset("videos/split", data=[r.split for r in rows], dtype=_STR)
        f.create_dataset("videos/path", data=[r.path for r in rows], dtype=_STR)
        f["videos/label"] = np.array([r.label for r in rows], np.int32)
        for name in ("status", "error"):
            f.create_dataset(f"videos/{name}", shape=(n,), dtype=_STR)
        for name in ("duration", "fps"):
            f.create_dataset(f"videos/{name}", shape=(n,), dtype=np.float32)
        f.create_dataset("visual/clips", shape=(n, dims.clips, dims.visual_dim), dtype=np.float16,
                         chunks=(chunk_rows, dims.clips, dims.visual_dim))
        f.create_dataset("visual/mask", shape=(n, dims.clips), dtype=bool, chunks=(chunk_rows, dims.clips))
        if dims.views > 1:
            shape = (dims.clips, dims.views, dims.visual_dim)
            f.create_dataset("visual/views", shape=(n, *shape), dtype=np.float16, chunks=(chunk_rows, *shape))
        f.create_dataset("audio/segments", shape=(n, dims.segments, dims.audio_dim), dtype=np.float16,
                         chunks=(chunk_rows, dims.segments, dims.audio_dim))
        f.create_dataset("audio/mask", shape=(n, dims.segments), dtype=bool, chunks=(chunk_rows, dims.segments))
        f.create_dataset("text/video", shape=(n, texts.video_embedding.shape[1]), dtype=np.float16)
        f["text/video"][n_base:] = texts.video_embedding.astype(np.float16)
        if texts.video_strings is not None and (base is None or _has_strings(base)):
            f.create_dataset("text/string", shape=(n,), dtype=_STR)
            if len(texts.video_strings):
                f["text/string"][n_base:] = np.array(list(texts.video_strings), dtype=object)
        f.create_dataset("classes/name", data=list(texts.class_names), dtype=_STR)
        f.create_dataset("classes/prompt", data=list(texts.class_prompts), dtype=_STR)
        f["classes/embedding"] = texts.class_embedding.astype(np.float32)
        seen = np.zeros(n, bool)
        if base is not None:
            _copy_base(f, base, manifest, seen)
            from cavnet.extract.store.text_sets import copy_text_sets  # it imports this module

            copy_text_sets(base, f)
        for shard in shards:
            _copy_shard(f, read_shard(shard), manifest, seen, n_base)
        if not seen.all():
            raise StoreError(f"shards cover {int(seen.sum())} of {n} videos; rerun extract to finish")

    commit_h5(out, write, before_commit)


GROWN_KEYS = ("videos/status", "videos/error", "videos/duration", "videos/fps", "visual/clips", "visual/mask",
              "audio/segments", "audio/mask", "text/video")


def _has_strings(path: Path) -> bool:
    with h5py.File(path, "r") as f:
        return "text/string" in f


def _num_videos(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f["videos/id"].shape[0])


def _copy_base(f: h5py.File, base: Path, manifest: Manifest, seen: np.ndarray, block: int = 4096) -> None:
    """Copy a grown store's rows into the first rows of ``f``, block by block (a store may not fit in RAM)."""
    with h5py.File(base, "r") as b:
        ids = [_text(s) for s in b["videos/id"][()]]
        if ids != [r.video_id for r in manifest.rows[:len(ids)]]:
            raise StoreError(f"{base}: its videos are not the first rows of the grown store")
        for lo in range(0, len(ids), block):
            hi = min(lo + block, len(ids))
            for key in GROWN_KEYS + tuple(k for k in ("text/string", "visual/views") if k in f):
                f[key][lo:hi] = b[key][lo:hi]
    seen[:len(ids)] = True


def _copy_shard(f: h5py.File, data: dict[str, np.ndarray], manifest: Manifest, seen: np.ndarray,
                offset: int = 0) -> None:
    start, count = offset + int(data["start"]), len(data["videos/id"])
    sl = slice(start, start + count)
    expected = [r.video_id for r in manifest.rows[sl]]
    if list(data["videos/id"]) != expected or seen[sl].any():
        raise StoreError(f"shard at row {start} does not match the manifest (was the corpus changed?)")
    keys = ("videos/status", "videos/error", "videos/duration", "videos/fps",
            "visual/clips", "visual/mask", "audio/segments", "audio/mask")
    for key in keys + (("visual/views",) if "visual/views" in f else ()):
        f[key][sl] = data[key]
    seen[sl] = True
