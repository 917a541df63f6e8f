"""Reading a consolidated feature store: metadata, per-split row tables, and feature blocks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cavnet.extract.config import ExtractConfig
from cavnet.extract.store.headers import read_header
from cavnet.extract.status import USABLE
from cavnet.extract.store.writer import READABLE_VERSIONS, StoreDims, StoreError


REQUIRED = ("videos/id", "videos/split", "videos/label", "videos/status", "visual/clips", "visual/mask",
            "audio/segments", "audio/mask", "text/video", "classes/name", "classes/embedding")


def strings(ds: h5py.Dataset, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Rows ``lo:hi`` (all by default) of a string dataset as an object array of str."""
    return np.array([s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[lo:hi]], dtype=object)


@dataclass(frozen=True)
class RowTable:
    """Small per-video arrays of the whole store (N,): ids, splits, labels, statuses."""

    ids: np.ndarray
    splits: np.ndarray
    labels: np.ndarray
    statuses: np.ndarray
    audio_present: np.ndarray

    def select(self, split: str | None, labelled: bool = True) -> np.ndarray:
        """Sorted row indices of ``split`` whose status is usable (and label known if ``labelled``)."""
        keep = np.isin(self.statuses, USABLE)
        if split is not None:
            keep &= self.splits == split
        if labelled:
            keep &= self.labels >= 0
        return np.flatnonzero(keep)


@dataclass
class Features:
    """Feature rows as float32: visual (B, n, Dv), vmask (B, n), audio (B, m, Da), amask (B, m), text (B, Dt)."""

    visual: np.ndarray
    vmask: np.ndarray
    audio: np.ndarray
    amask: np.ndarray
    text: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class StoreIndex:
    """What a store says of its rows without a feature read: the extraction config (JSON), the ids,
    labels and statuses of its N rows in store order, and its class names."""

    config: str
    ids: list[str]
    labels: list[int]
    statuses: list[str]
    classes: list[str]


def read_index(path: Path) -> StoreIndex:
    """The :class:`StoreIndex` of the store file at ``path``, read without the format checks of
    :class:`FeatureStore` (extract reads it to grow a store). Read its headers first
    (``headers.read_header``): this raises what h5py raises on a damaged or foreign file
    (``OSError``, ``KeyError``, ``RuntimeError``, ``TypeError``)."""
    with h5py.File(path, "r") as f:
        return StoreIndex(str(f.attrs["config"]), f["videos/id"].asstr()[()].tolist(),
                          f["videos/label"][()].tolist(), f["videos/status"].asstr()[()].tolist(),
                          f["classes/name"].asstr()[()].tolist())


def damage_message(path: Path, error: str) -> str:
    """``X: not an HDF5 file (...)`` for a file that is no HDF5 at all, else ``store X is damaged: ...``."""
    if "file signature not found" in error:
        return f"{path}: not an HDF5 file ({error.split(': ', 1)[-1]})"
    return f"store {path} is damaged: {error}"


class FeatureStore:
    """A read-only view of one store file; refuses format versions other than ``READABLE_VERSIONS`` (a
    format-1 store reads as one view per clip: ``views`` 1)."""

    def __init__(self, path: str | Path) -> None:
        self.path, self._f = Path(path), None
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such store")
        if not self.path.is_file():
            raise StoreError(f"{self.path}: not a file")
        headers = read_header(self.path)
        if headers.error:
            raise StoreError(damage_message(self.path, headers.error))
        missing = [k for k in REQUIRED if k not in headers.datasets]
        try:
            self._f = h5py.File(self.path, "r")
            self._open(missing)
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            self.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"store {self.path} is damaged: {exc.__class__.__name__}: {exc}") from None

    def _open(self, missing: list[str]) -> None:
        attrs = self._f.attrs
        version = int(attrs.get("format_version", -1))
        if version not in READABLE_VERSIONS:
            raise StoreError(f"{self.path}: store format version {version}, this cavnet reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
        self.format_version = version
        if "num_videos" not in attrs:
            raise StoreError(f"{self.path}: a shard or an unfinished store, not a consolidated one")
        if missing:
            raise StoreError(f"store {self.path} is damaged: dataset {missing[0]} is missing"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        self.config = ExtractConfig.from_json(attrs["config"])
        self.dims = StoreDims(**json.loads(attrs["dims"]))
        if self.dims.views > 1 and "visual/views" not in self._f:
            raise StoreError(f"store {self.path} is damaged: dataset visual/views is missing")
        self.text_model = str(attrs["text_model"])
        self.class_names = list(strings(self._f["classes/name"]))
        self.class_embedding = self._f["classes/embedding"][()].astype(np.float32)
        self.num_videos = int(attrs["num_videos"])
        self.chunk_rows = self._f["visual/clips"].chunks[0] if self._f["visual/clips"].chunks else 64

    @property
    def views(self) -> int:
        """Spatial views per clip (``visual/views``); 1 for a store of format 1 or extracted without --views."""
        return self.dims.views

    @property
    def centre_view(self) -> int:
        """The index of the centre, unflipped view in ``read_views``' view axis."""
        return self.config.views.centre if self.views > 1 else 0

    def require_views(self, count: int, what: str) -> None:
        """Refuse, in one line, a store with fewer than ``count`` views per clip (``what`` needs them)."""
        if self.views < count:
            old = " (format 1, from before spatial views)" if self.format_version < 2 else ""
            raise StoreError(f"{self.path}: {what} needs {count} views per clip, this store{old} holds "
                             f"{self.views}; re-extract it with --views")

    def read_views(self, index: np.ndarray) -> np.ndarray:
        """Every spatial view of rows ``index`` (sorted, unique): ``(B, n, V, Dv)`` float32; a store of one
        view gives its clips as view 0."""
        if self.views == 1:
            return self.read(index).visual[:, :, None]
        index = np.asarray(index, dtype=np.int64)
        runs = _runs(index)
        if not runs:
            return self._empty("visual/views").astype(np.float32)
        views = np.concatenate([self._f["visual/views"][a:b] for a, b in runs]).astype(np.float32)
        self._refuse_rows(~np.isfinite(views).all(axis=(1, 2, 3)), index)
        return views

    @property
    def text_dim(self) -> int:
        return int(self._f["text/video"].shape[1])

    def rows(self) -> RowTable:
        f = self._f
        return RowTable(strings(f["videos/id"]), strings(f["videos/split"]), f["videos/label"][()],
                        strings(f["videos/status"]), f["audio/mask"][()].any(axis=1))

    def video_text(self) -> np.ndarray:
        """The text embedding of every video, (N, Dt) float32."""
        return self._f["text/video"][()].astype(np.float32)

    @property
    def has_video_strings(self) -> bool:
        """Whether the store keeps the strings it embedded (``text/string``; stores from before lack it)."""
        return "text/string" in self._f

    def video_strings(self, index: np.ndarray | None = None) -> np.ndarray:
        """The string each video's ``text/video`` row embeds (its caption or title, else its class prompt,
        else ""), (N,) object array of str, or rows ``index`` of it; a store without them is refused."""
        if not self.has_video_strings:
            raise StoreError(f"{self.path}: this store predates stored texts (no text/string), so its sentence "
                             "encoder cannot be fine-tuned on its videos' texts; re-extract it")
        texts = strings(self._f["text/string"])
        return texts if index is None else texts[np.asarray(index, dtype=np.int64)]

    def class_prompts(self) -> list[str]:
        """The class prompts that ``classes/embedding`` embeds, in class order."""
        return list(strings(self._f["classes/prompt"]))

    def text_sets(self) -> list[str]:
        """The names of the store's label-text sets: ``default`` (the extraction's prompts) first."""
        from cavnet.extract.store.text_sets import set_names

        return set_names(self._f)

    def text_set(self, name: str = "default"):
        """The label-text set ``name`` (``extract.store.text_sets.TextSet``: per-class texts and the (C, Dt)
        embedding); ``StoreError`` naming the store's sets when it has no such set."""
        from cavnet.extract.store.text_sets import read_set

        return read_set(self._f, name, self.path)

    def read(self, index: np.ndarray) -> Features:
        """Rows ``index`` (sorted, unique) as float32 arrays; contiguous runs are read as slices."""
        index = np.asarray(index, dtype=np.int64)
        keys = ("visual/clips", "visual/mask", "audio/segments", "audio/mask", "text/video", "videos/label")
        if len(index) and len(index) >= 0.25 * (index[-1] + 1 - index[0]):
            # dense enough: one read of the covering range per dataset beats one read per run
            lo, hi = int(index[0]), int(index[-1]) + 1
            cat = {k: self._f[k][lo:hi][index - lo] for k in keys}
        else:
            runs = _runs(index)
            cat = {k: (np.concatenate([self._f[k][a:b] for a, b in runs]) if runs else self._empty(k)) for k in keys}
        f = Features(cat["visual/clips"].astype(np.float32), cat["visual/mask"],
                     cat["audio/segments"].astype(np.float32), cat["audio/mask"],
                     cat["text/video"].astype(np.float32), cat["videos/label"].astype(np.int64))
        self._refuse_non_finite(f, index)
        return f

    def _refuse_non_finite(self, f: Features, index: np.ndarray) -> None:
        """No NaN or inf feature row is ever trained or scored on: one line naming how many rows of this read
        hold one and the first video (``cavnet check`` lists them all)."""
        self._refuse_rows(~(np.isfinite(f.visual).all(axis=(1, 2)) & np.isfinite(f.audio).all(axis=(1, 2))
                            & np.isfinite(f.text).all(axis=1)), index)

    def _refuse_rows(self, bad: np.ndarray, index: np.ndarray) -> None:
        if bad.any():
            first = str(self.rows().ids[index[np.flatnonzero(bad)[0]]])
            raise StoreError(f"{self.path}: {int(bad.sum())} video(s) with NaN or inf features (first {first}); "
                              f"nothing is trained or scored on them: re-extract them (cavnet check {self.path} "
                              "lists them)")

    def block(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Rows ``lo:hi`` of every per-video dataset as stored (float16 features, bool masks, strings as str)."""
        out = {}
        for group in ("videos", "visual", "audio", "text"):
            for name, ds in self._f[group].items():
                key = f"{group}/{name}"
                out[key] = strings(ds, lo, hi) if ds.dtype.kind in "SOU" else ds[lo:hi]
        return out

    def split(self, name: str | None = None, labelled: bool = False) -> Features:
        """The usable rows of split ``name`` (every split if None) as float32 arrays; their row indices
        are ``self.rows().select(name, labelled)``."""
        return self.read(self.rows().select(name, labelled=labelled))

    def fingerprint(self) -> str:
        """sha256 of the extraction config and the video ids: the same store content gives the same value
        (cheap: no feature is read)."""
        import hashlib

        h = hashlib.sha256(str(self._f.attrs["config"]).encode("utf-8"))
        for vid in strings(self._f["videos/id"]):
            h.update(b"\0" + vid.encode("utf-8"))
        return h.hexdigest()

    def _empty(self, key: str) -> np.ndarray:
        ds = self._f[key]
        return np.zeros((0,) + ds.shape[1:], ds.dtype)

    def close(self) -> None:
        if getattr(self, "_f", None) is not None:
            self._f.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _runs(index: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted indices into half-open runs of consecutive rows: [0,1,2,5,6] -> [(0,3), (5,7)]."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(index)]])
    return [(int(index[s]), int(index[e - 1]) + 1) for s, e in zip(starts, ends)]
