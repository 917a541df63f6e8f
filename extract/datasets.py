"""Dataset readers: a Kinetics-400 copy or a generic CSV, read into a :class:`Manifest`.

Both readers keep every listed video, whatever state its file is in: a listed file that is not on disk
is a row with ``exists=False``, so the extraction can record it as ``missing_file``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CavnetError
from .files.inputs import read_text
from .manifest import Manifest, ManifestRow

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")
SYNTH_DEFAULT = Path.home() / ".cache" / "cavnet" / "av-synth"  # --dataset synth without --root
SPLIT_ORDER = ("train", "val", "test")
_SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val", "val": "val",
                  "train": "train", "training": "train", "test": "test", "testing": "test"}
_SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validate", "validation"), "test": ("test",)}
_K400_COLUMNS = ("youtube_id", "time_start", "time_end")
_OFFICIAL_CSV_ORDER = {"train": 0, "validate": 1, "val": 1, "validation": 1, "test": 2}


class DatasetError(CavnetError):
    """Bad dataset input: no CSV found, missing columns, an unreadable file or a malformed row.

    A ``ValueError`` (through ``CavnetError``), so the CLI reports it as one line with exit code 2."""


def normalise_split(name: str) -> str:
    """``validate``/``validation`` -> ``val`` and so on; unknown names are returned lower-cased."""
    key = name.strip().lower()
    return _SPLIT_ALIASES.get(key, key)


def k400_video_id(youtube_id: str, time_start: int, time_end: int) -> str:
    """The Kinetics file stem ``{youtube_id}_{start:06d}_{end:06d}``."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def _read_table(path: Path, header_only: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """Header (lower-cased, stripped) and rows of a CSV file, read through the text-input door (a regular
    UTF-8 file of bounded size); raises DatasetError if it cannot be read or names a column twice."""
    try:
        reader = csv.reader(io.StringIO(read_text(path, "CSV"), newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            raise DatasetError(f"{path}: the header names column(s) {','.join(twice)} twice; keep one of each")
        rows = [] if header_only else [dict(zip(header, (v.strip() for v in values)))
                                       for values in reader if any(values)]
    except csv.Error as e:
        raise DatasetError(f"{path}: cannot read CSV ({e})") from None
    except DatasetError:
        raise
    except CavnetError as e:
        raise DatasetError(str(e)) from None
    return header, rows


def _parse_time(value: str, path: Path, line: int, column: str) -> int:
    try:
        seconds = float(value)
    except ValueError:
        raise DatasetError(f"{path}:{line}: {column} {value!r} is not a number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DatasetError(f"{path}:{line}: {column} {value!r} is not a finite time in seconds >= 0")
    return int(round(seconds))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # text fields may hold tabs and line breaks
_CONTROL_STRICT = re.compile(r"[\x00-\x1f\x7f]")


def check_fields(row: dict[str, str], path: Path, line: int) -> None:
    """Refuse NUL and other control characters (an HDF5 string cannot hold a NUL; a store would fail at
    consolidation), naming the file, line and column."""
    for column, value in row.items():
        pattern = _CONTROL if column in ("text", "caption") else _CONTROL_STRICT
        bad = pattern.search(value or "")
        if bad:
            raise DatasetError(f"{path}:{line}: column {column} holds the control character "
                               f"{bad.group()!r}; remove it")


def _is_k400_header(header: Sequence[str]) -> bool:
    return all(c in header for c in _K400_COLUMNS)


def _find_k400_csvs(root: Path) -> list[Path]:
    """Kinetics CSVs in ``root`` and ``root/annotations``, official names first (train, validate, test)."""
    found = [p for folder in (root, root / "annotations") if folder.is_dir()
             for p in sorted(folder.glob("*.csv"))]
    k400 = []
    for p in found:
        header, _ = _read_table(p, header_only=True)  # an unreadable CSV stops here: it may hold a split
        if _is_k400_header(header):
            k400.append(p)
        elif set(header) & {"youtube_id", "time_start", "time_end"}:
            missing = [c for c in _K400_COLUMNS if c not in header]
            raise DatasetError(f"{p}: a Kinetics CSV without column(s) {','.join(missing)} "
                               f"(header: {','.join(header)})")
        else:  # captions.csv, a probe table ...: no Kinetics column at all
            log.info("%s: not a Kinetics CSV, ignored", p)
    if not k400:
        raise DatasetError(f"{root}: no Kinetics CSV (columns {','.join(_K400_COLUMNS)},split) found "
                           f"in {root} or {root / 'annotations'}")
    return sorted(k400, key=lambda p: _OFFICIAL_CSV_ORDER.get(p.stem.lower(), 3))


def _split_from_name(path: Path) -> str:
    return normalise_split(path.stem) if normalise_split(path.stem) in SPLIT_ORDER else ""


def _parse_k400_csv(path: Path) -> list[tuple[str, str, str]]:
    """``(video_id, label_name, split)`` per row of one Kinetics CSV; label_name is '' if absent."""
    header, rows = _read_table(path)
    missing = [c for c in _K400_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {','.join(missing)} (header: {','.join(header)})")
    default_split = _split_from_name(path)
    if "split" not in header and not default_split:
        raise DatasetError(f"{path}: no split column and the file name does not name a split")
    out = []
    for line, row in enumerate(rows, start=2):
        check_fields(row, path, line)
        youtube_id = row.get("youtube_id", "")
        if not youtube_id:
            raise DatasetError(f"{path}:{line}: empty youtube_id")
        start = _parse_time(row.get("time_start", ""), path, line, "time_start")
        end = _parse_time(row.get("time_end", ""), path, line, "time_end")
        if end < start:
            raise DatasetError(f"{path}:{line}: time_end {end} is before time_start {start}")
        split = normalise_split(row.get("split") or default_split)
        out.append((k400_video_id(youtube_id, start, end), row.get("label", ""), split))
    return out


def index_video_files(root: Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> dict[str, list[str]]:
    """One walk over ``root``: file stem -> paths of the video files with that stem (walk order)."""
    exts = tuple(e.lower() for e in extensions)
    index: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in exts:
                index.setdefault(stem, []).append(os.path.join(folder, name))
    return index


def _pick_path(candidates: list[str], root: Path, split: str) -> str:
    """Prefer a file under the row's split folder (``val``/``validate`` for val), then by extension order."""
    folders = _SPLIT_FOLDERS.get(split, (split,))

    def rank(p: str) -> tuple[int, int]:
        top = Path(os.path.relpath(p, root)).parts[0]
        ext = os.path.splitext(p)[1].lower()
        return (0 if top in folders else 1, VIDEO_EXTENSIONS.index(ext) if ext in VIDEO_EXTENSIONS else 9)

    return min(candidates, key=rank)


def _read_captions(root: Path) -> dict[str, str]:
    """``{root}/captions.csv`` (``video_id,caption``) as a dict; empty if absent or malformed (warns)."""
    path = root / "captions.csv"
    if not path.is_file():
        return {}
    header, rows = _read_table(path)
    if "video_id" not in header or "caption" not in header:
        warnings.warn(f"{path}: ignored, needs columns video_id,caption", stacklevel=3)
        return {}
    for line, r in enumerate(rows, start=2):
        check_fields(r, path, line)
    return {r["video_id"]: r.get("caption", "") for r in rows if r.get("video_id")}


def read_k400(root: str | Path, splits: Sequence[str] | None = None,
              csv_paths: Sequence[str | Path] | None = None) -> Manifest:
    """Read a Kinetics-400 copy under ``root`` into a manifest.

    CSVs are found in ``root`` and ``root/annotations`` unless ``csv_paths`` are given. Files are looked
    up by id under ``{split}/``, ``{split}/{label}/`` or ``{label}/`` with extension .mp4/.mkv/.webm.
    Class ids are the sorted label names of all found CSVs, whichever splits are selected. Rows come in
    split order train, val, test, CSV order within a split; a missing file keeps its row with
    ``exists=False`` and the path ``{root}/{split}/{id}.mp4``. Duplicate ids keep the first row (warns).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a directory")
    paths = [Path(p) for p in csv_paths] if csv_paths else _find_k400_csvs(root)
    parsed = [item for p in paths for item in _parse_k400_csv(p)]
    classes = tuple(sorted({label for _, label, _ in parsed if label}))
    class_id = {name: i for i, name in enumerate(classes)}
    wanted = None if splits is None else {normalise_split(s) for s in splits}
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    ordered = sorted(parsed, key=lambda item: rank.get(item[2], len(rank)))  # stable: CSV order kept

    files = index_video_files(root)
    captions = _read_captions(root)
    across: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    duplicates = 0
    rows = []
    for video_id, label, split in ordered:
        if video_id in seen:
            duplicates += 1
            if seen[video_id] != split:
                across.append((video_id, seen[video_id], split))
            continue
        seen[video_id] = split
        if wanted is not None and split not in wanted:
            continue
        candidates = files.get(video_id)
        path = _pick_path(candidates, root, split) if candidates else str(root / split / f"{video_id}.mp4")
        rows.append(ManifestRow(video_id=video_id, path=path, label=class_id.get(label, -1), label_name=label,
                                split=split, text=captions.get(video_id, ""), exists=bool(candidates)))
    if duplicates:
        warnings.warn(f"{root}: {duplicates} duplicate video id(s) in the CSVs, kept the first of each",
                      stacklevel=2)
    warn_shared(root, across)
    missing = sum(not r.exists for r in rows)
    log.info("k400 %s: %d videos, %d classes, %d missing files, %d duplicates",
             root, len(rows), len(classes), missing, duplicates)
    return Manifest(rows=tuple(rows), classes=classes)


def warn_shared(source: Path, shared: list[tuple[str, str, str]]) -> None:
    """Warn, once, about videos listed in two splits (a train video scored as val is a leak): ``shared`` holds
    (video, split it was kept in, split it was also listed in)."""
    if shared:
        video, kept, other = shared[0]
        warnings.warn(f"{source}: {len(shared)} video(s) listed in two splits (e.g. {video} in {kept} and {other}); "
                      f"each kept in its first split only, so no video is both trained and scored on", stacklevel=3)


def _unique_id(stem: str, used: set[str]) -> str:
    candidate, n = stem, 0
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def read_csv_manifest(path: str | Path, root: str | Path | None = None) -> Manifest:
    """Read a generic CSV ``path,label[,text][,split]`` into a manifest.

    Relative paths resolve against ``root`` (default: the CSV's folder). An empty or absent label means
    unlabeled (-1); the split defaults to ``train``. The video id is the file stem, made unique with
    ``_1``, ``_2``, ... suffixes; class ids are the sorted non-empty labels.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: CSV file not found")
    header, table = _read_table(path)  # a folder or a pipe: refused by the text-input door
    if "path" not in header:
        raise DatasetError(f"{path}: missing column path (header: {','.join(header) or 'empty'})")
    base = Path(root) if root is not None else path.parent
    classes = tuple(sorted({r["label"] for r in table if r.get("label")}))
    class_id = {name: i for i, name in enumerate(classes)}
    used: set[str] = set()
    split_of: dict[str, str] = {}
    shared: list[tuple[str, str, str]] = []
    rows = []
    for line, r in enumerate(table, start=2):
        check_fields(r, path, line)
        if not r.get("path"):
            raise DatasetError(f"{path}:{line}: empty path")
        file = Path(r["path"]).expanduser()
        file = file if file.is_absolute() else base / file
        label, split = r.get("label", ""), normalise_split(r.get("split") or "train")
        first = split_of.setdefault(os.path.normpath(file), split)
        if first != split:
            shared.append((str(file), first, split))
            continue
        rows.append(ManifestRow(video_id=_unique_id(file.stem, used), path=str(file),
                                label=class_id.get(label, -1), label_name=label,
                                split=split, text=r.get("text", ""), exists=file.is_file()))
    warn_shared(path, shared)
    return Manifest(rows=tuple(rows), classes=classes)


def load_manifest(dataset: str, root: Path | None = None, manifest: Path | None = None,
                  splits: tuple[str, ...] | None = None, limit: int | None = None,
                  synth_videos: int = 200, synth_classes: int = 8, seed: int = 0) -> Manifest:
    """The manifest of ``dataset`` (k400 | csv | synth), restricted to ``splits`` and ``limit``; synth generates
    AV-Synth at ``root`` first when it is not there."""
    if dataset == "k400":
        if root is None:
            raise CavnetError("--dataset k400 needs --root")
        m = read_k400(root)
    elif dataset == "csv":
        if manifest is None:
            raise CavnetError("--dataset csv needs --manifest F.csv")
        m = read_csv_manifest(manifest, root)
    elif dataset == "synth":
        root = root or SYNTH_DEFAULT
        if not (root / "train.csv").exists():
            from .synth import synth

            synth(root, videos=synth_videos, classes=synth_classes, seed=seed)
        m = read_k400(root)
    else:
        raise CavnetError(f"unknown dataset {dataset!r}; use k400, csv or synth")
    selected = m.select(splits, limit)
    if len(selected) == 0:
        raise CavnetError(f"no videos in split(s) {','.join(splits or ())} of this {dataset} corpus")
    return selected


@dataclass(frozen=True)
class Corpus:
    """The videos a command reads (``--dataset``, ``--root``, ``--manifest``): ``dataset`` k400 | csv | synth,
    its ``root`` folder (k400), path base (csv) or cache (synth), and its ``manifest`` CSV (csv)."""

    dataset: str = "k400"
    root: Path | None = None
    manifest: Path | None = None

    def load(self, splits: tuple[str, ...] | None = None, limit: int | None = None) -> Manifest:
        """Its manifest, restricted to ``splits`` and ``limit`` (see :func:`load_manifest`)."""
        return load_manifest(self.dataset, self.root, self.manifest, splits, limit)

    def input_files(self) -> list[Path]:
        """The files its manifest is read from (the Kinetics CSVs, the csv manifest): what no output of a
        command that reads it may replace."""
        if self.dataset == "csv":
            return [Path(self.manifest)] if self.manifest is not None else []
        root = self.root if self.root is not None else (SYNTH_DEFAULT if self.dataset == "synth" else None)
        if root is None or not Path(root).is_dir():
            return []
        try:
            return list(_find_k400_csvs(Path(root)))
        except CavnetError:
            return []

    def record(self) -> dict[str, str | None]:
        """What a run.json says about it: the dataset and the absolute paths."""
        return {"dataset": self.dataset, "root": str(Path(self.root).resolve()) if self.root else None,
                "manifest": str(Path(self.manifest).resolve()) if self.manifest else None}
