"""``cavnet check STORE.h5``: validate a feature store against docs/store.md and say exactly what is wrong.

Checked: the format version (1, from before spatial views, or 2) and root attributes; the views a store
records (``dims``, the config's ``--views``/``--flip``, the root attributes) against each other and
``visual/views``, whose centre view is ``visual/clips``; every dataset's presence, shape and dtype against the
recorded config and dims; statuses known and adding up to ``num_videos``; unique ids; labels in range;
masks against statuses (failed videos have none, usable ones a clip, ``no_audio`` no audio, masks are
prefixes, padding is zero); every feature finite; class embeddings unit length; every label-text set
against the class table (``extract.store.text_sets.check_text_sets``); no shard folder or tmp file left
beside the store (a consolidated store has none).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cavnet.extract.provenance import random_weights_note
from cavnet.extract.status import CLEAN, KNOWN, NO_AUDIO, USABLE
from cavnet.extract.store.headers import read_header
from cavnet.extract.store.reader import strings
from cavnet.extract.store.writer import READABLE_VERSIONS, StoreDims, stray_tmp_files, view_attrs

_EXAMPLES = 5


@dataclass
class CheckResult:
    """``problems``: one line each (empty: the store is sound); ``facts``: what was found."""

    path: Path
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if self.ok:
            f = self.facts
            counts = ", ".join(f"{k} {v}" for k, v in f["statuses"].items())
            views = f" x {f['views']} views" if f["views"] > 1 else ""
            return [f"{self.path}: ok; format {f['format']}, {f['videos']} videos ({counts}); "
                    f"n={f['clips']} clips x {f['visual_dim']}{views}, "
                    f"m={f['segments']} segments x {f['audio_dim']}, "
                    f"text {f['text_dim']}, {f['classes']} classes; text sets "
                    f"{', '.join(f.get('text_sets', ['default']))}"] + [f["random_weights"]] * bool(f["random_weights"])
        return [f"{self.path}: {len(self.problems)} problem(s)"] + [f"  - {p}" for p in self.problems]


def _ids(ids: np.ndarray, where: np.ndarray) -> str:
    picked = [str(x) for x in ids[np.flatnonzero(where)[:_EXAMPLES]]]
    more = int(np.count_nonzero(where)) - len(picked)
    return ", ".join(picked) + (f" and {more} more" if more > 0 else "")


def _header(f: h5py.File, problems: list[str]) -> tuple[StoreDims, int] | None:
    """The store's dims and N from its root attributes, or None when they cannot be read."""
    from cavnet.extract.config import ExtractConfig

    version = f.attrs.get("format_version")
    if version is None or int(version) not in READABLE_VERSIONS:
        problems.append(f"format_version is {version}, this cavnet reads {', '.join(map(str, READABLE_VERSIONS))}")
        return None
    for name in ("cavnet_version", "config", "dims", "text_model", "num_videos"):
        if name not in f.attrs:
            problems.append(f"root attribute {name!r} missing"
                            + (" (a shard or an unfinished store?)" if name == "num_videos" else ""))
    try:
        config = ExtractConfig.from_json(f.attrs["config"])
        dims = StoreDims(**json.loads(f.attrs["dims"]))
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"config or dims attribute unreadable ({type(exc).__name__}: {exc})")
        return None
    if (dims.clips, dims.segments) != (config.sampling.clips, config.audio_sampling.segments):
        problems.append(f"dims say {dims.clips} clips / {dims.segments} segments, the config "
                        f"{config.sampling.clips} / {config.audio_sampling.segments}")
    _check_backbone_dims(config, dims, problems)
    _check_views(f, config, dims, int(version), problems)
    n = int(f.attrs.get("num_videos", f["videos/id"].shape[0] if "videos/id" in f else 0))
    return dims, n


def _check_views(f: h5py.File, config: Any, dims: StoreDims, version: int, problems: list[str]) -> None:
    """The views of ``dims``, of the config and of the root attributes agree (format 1: one view)."""
    if dims.views != config.views.count:
        problems.append(f"dims say {dims.views} views, the config {config.views.count} "
                        f"(--views {config.views.crops}{' --flip' if config.views.flip else ''})")
    if version < 2:
        if dims.views != 1:
            problems.append(f"a format-1 store with {dims.views} views (format 1 has one)")
        return
    want = view_attrs(f.attrs["config"], dims)
    got = {k: f.attrs.get(k) for k in want}
    if any(got[k] is None or type(want[k])(got[k]) != want[k] for k in want):
        problems.append(f"root attributes views/crops/flip are {got}, the config and dims say {want}")


def _check_backbone_dims(config: Any, dims: StoreDims, problems: list[str]) -> None:
    from cavnet.extract.backbones import feature_dim

    for modality, name, width, what in (("visual", config.visual, dims.visual_dim, "visual_dim"),
                                        ("audio", config.audio, dims.audio_dim, "audio_dim")):
        try:
            expected = feature_dim(config, modality)
        except KeyError:
            continue  # a backbone this cavnet does not know: nothing to compare with
        if expected != width:
            problems.append(f"dims {what} is {width}, backbone {name} gives {expected}")


def _layout(dims: StoreDims, n: int, c: int, dt: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Dataset -> (shape, dtype kind) as docs/store.md lays it out."""
    out: dict[str, tuple[tuple[int, ...], str]] = {f"videos/{k}": ((n,), "str")
                                                   for k in ("id", "split", "path", "status", "error")}
    out.update({"videos/label": ((n,), "int32"), "videos/duration": ((n,), "float32"),
                "videos/fps": ((n,), "float32"),
                "visual/clips": ((n, dims.clips, dims.visual_dim), "float16"),
                "visual/mask": ((n, dims.clips), "bool"),
                **({"visual/views": ((n, dims.clips, dims.views, dims.visual_dim), "float16")} if dims.views > 1
                   else {}),
                "audio/segments": ((n, dims.segments, dims.audio_dim), "float16"),
                "audio/mask": ((n, dims.segments), "bool"), "text/video": ((n, dt), "float16"),
                "classes/name": ((c,), "str"), "classes/prompt": ((c,), "str"),
                "classes/embedding": ((c, dt), "float32")})
    return out


def _kind(ds: h5py.Dataset) -> str:
    return "str" if h5py.check_string_dtype(ds.dtype) is not None else str(ds.dtype)


def _check_layout(f: h5py.File, dims: StoreDims, n: int, problems: list[str]) -> bool:
    """True when every dataset is there with its documented shape and dtype."""
    c = f["classes/name"].shape[0] if "classes/name" in f else 0
    dt = f["classes/embedding"].shape[1] if "classes/embedding" in f and f["classes/embedding"].ndim == 2 else 0
    sound = True
    for name, (shape, kind) in _layout(dims, n, c, dt).items():
        if name not in f:
            problems.append(f"{name} missing")
            sound = False
        elif f[name].shape != shape or _kind(f[name]) != kind:
            problems.append(f"{name} is {f[name].shape} {_kind(f[name])}, expected {shape} {kind}")
            sound = False
    if dims.views == 1 and "visual/views" in f:
        problems.append("visual/views present in a store of one view")
        sound = False
    texts = f.get("text/string")  # optional: stores written before it lack it
    if texts is not None and (texts.shape != (n,) or _kind(texts) != "str"):
        problems.append(f"text/string is {texts.shape} {_kind(texts)}, expected {(n,)} str")
        sound = False
    return sound


def _check_rows(f: h5py.File, n: int, problems: list[str]) -> dict[str, int]:
    """Ids, statuses, errors and labels; returns the counts by status."""
    ids, status, error = (strings(f[f"videos/{k}"]) for k in ("id", "status", "error"))
    counts = Counter(status.tolist())
    unknown = ~np.isin(status, KNOWN)
    if unknown.any():
        problems.append(f"unknown status {sorted(set(status[unknown]))} in {int(unknown.sum())} rows "
                        f"({_ids(ids, unknown)})")
    if sum(counts.values()) != n or len(ids) != n:
        problems.append(f"statuses add up to {sum(counts.values())}, the store says num_videos {n}")
    names, seen = np.unique(ids.astype(str), return_counts=True)
    if (seen > 1).any():
        problems.append(f"duplicate video ids: {', '.join(names[seen > 1][:_EXAMPLES])}")
    if (ids == "").any():
        problems.append(f"{int((ids == '').sum())} rows without an id")
    silent = ~unknown & ~np.isin(status, CLEAN) & (error == "")
    if silent.any():
        problems.append(f"{int(silent.sum())} failed rows without an error message ({_ids(ids, silent)})")
    labels, classes = f["videos/label"][()], f["classes/name"].shape[0]
    bad = (labels < -1) | (labels >= classes)
    if bad.any():
        problems.append(f"{int(bad.sum())} labels outside -1..{classes - 1} ({_ids(ids, bad)})")
    return dict(counts.most_common())


def _check_masks(f: h5py.File, problems: list[str]) -> None:
    """Masks against statuses, and masks as prefixes (real clips first, padding after)."""
    ids, status = strings(f["videos/id"]), strings(f["videos/status"])
    vmask, amask = f["visual/mask"][()], f["audio/mask"][()]
    usable, known = np.isin(status, USABLE), np.isin(status, KNOWN)
    rules = [(known & ~usable & (vmask.any(1) | amask.any(1)), "failed rows with clips or segments"),
             (usable & ~vmask.any(1), "usable rows without a single clip"),
             ((status == NO_AUDIO) & amask.any(1), f"{NO_AUDIO} rows with audio segments")]
    for name, mask in (("visual/mask", vmask), ("audio/mask", amask)):
        rules.append(((mask[:, 1:] & ~mask[:, :-1]).any(1), f"{name} rows that are not a prefix"))
    for bad, what in rules:
        if bad.any():
            problems.append(f"{int(bad.sum())} {what} ({_ids(ids, bad)})")


def _check_values(f: h5py.File, problems: list[str]) -> None:
    """Finite features, zero padding, unit class embeddings; read block by block."""
    ids = strings(f["videos/id"])
    for feats, mask_name in (("visual/clips", "visual/mask"), ("audio/segments", "audio/mask")):
        ds, rows = f[feats], f[feats].chunks[0] if f[feats].chunks else 64
        nonfinite, padded = np.zeros(len(ids), bool), np.zeros(len(ids), bool)
        for lo in range(0, ds.shape[0], rows):
            block, mask = ds[lo:lo + rows], f[mask_name][lo:lo + rows]
            nonfinite[lo:lo + rows] = ~np.isfinite(block).all(axis=(1, 2))
            padded[lo:lo + rows] = ((block != 0).any(axis=2) & ~mask).any(axis=1)
        if nonfinite.any():
            problems.append(f"{feats}: non-finite values in {int(nonfinite.sum())} rows ({_ids(ids, nonfinite)})")
        if padded.any():
            problems.append(f"{feats}: non-zero padding in {int(padded.sum())} rows ({_ids(ids, padded)})")
    for name in ("text/video", "classes/embedding", "videos/duration", "videos/fps"):
        data = f[name][()]
        if not np.isfinite(data).all():
            problems.append(f"{name}: non-finite values")
    norms = np.linalg.norm(f["classes/embedding"][()].astype(np.float64), axis=1)
    if len(norms) and not np.allclose(norms, 1.0, atol=1e-3):
        problems.append(f"classes/embedding: rows not unit length (norms {norms.min():.3f}..{norms.max():.3f})")


def _check_view_values(f: h5py.File, dims: StoreDims, config_json: str, problems: list[str]) -> None:
    """``visual/views``: finite, zero padding, and its centre view is ``visual/clips``; block by block."""
    ids, ds = strings(f["videos/id"]), f["visual/views"]
    centre = view_attrs(config_json, dims)["crops"] // 2
    rows = ds.chunks[0] if ds.chunks else 64
    bad = {"non-finite values": np.zeros(len(ids), bool), "non-zero padding": np.zeros(len(ids), bool),
           "a centre view that differs from visual/clips": np.zeros(len(ids), bool)}
    for lo in range(0, ds.shape[0], rows):
        block, mask, clips = ds[lo:lo + rows], f["visual/mask"][lo:lo + rows], f["visual/clips"][lo:lo + rows]
        at = slice(lo, lo + len(block))
        bad["non-finite values"][at] = ~np.isfinite(block).all(axis=(1, 2, 3))
        bad["non-zero padding"][at] = ((block != 0).any(axis=(2, 3)) & ~mask).any(axis=1)
        bad["a centre view that differs from visual/clips"][at] = (block[:, :, centre] != clips).any(axis=(1, 2))
    for what, rows_bad in bad.items():
        if rows_bad.any():
            problems.append(f"visual/views: {what} in {int(rows_bad.sum())} rows ({_ids(ids, rows_bad)})")


def _check_leftovers(path: Path, problems: list[str]) -> None:
    shard_dir = path.with_name(path.name + ".shards")
    if shard_dir.exists():
        problems.append(f"shard folder {shard_dir} is still there: the extraction did not finish its "
                        "consolidation; rerun the same extract command")
    for tmp in stray_tmp_files(path):
        problems.append(f"stray tmp file {tmp} (a writer died); rerun extract or delete it")


def check_store(path: Path) -> CheckResult:
    """Validate the store at ``path``; every problem found is listed, none raises."""
    result = CheckResult(Path(path))
    _check_leftovers(result.path, result.problems)
    if not Path(path).is_file():
        result.problems.append("no such file" if not Path(path).exists() else "not a file")
        return result
    headers = read_header(Path(path))
    if headers.error:
        result.problems.append(f"not an HDF5 file ({headers.error.split(': ', 1)[-1]})"
                               if "file signature not found" in headers.error else f"damaged: {headers.error}")
        return result
    try:
        _check_file(path, result)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        result.problems.append(f"damaged: {exc.__class__.__name__}: {exc}")
    return result


def _check_file(path: Path, result: CheckResult) -> None:
    with h5py.File(path, "r") as f:
        header = _header(f, result.problems)
        if header is None:
            return
        dims, n = header
        if not _check_layout(f, dims, n, result.problems):
            return  # values cannot be checked against a wrong layout
        counts = _check_rows(f, n, result.problems)
        _check_masks(f, result.problems)
        _check_values(f, result.problems)
        if dims.views > 1:
            _check_view_values(f, dims, f.attrs["config"], result.problems)
        from cavnet.extract.store.text_sets import check_text_sets

        sets = check_text_sets(f, result.problems)
        result.facts = {"text_sets": sets, "videos": n, "statuses": counts, "clips": dims.clips,
                        "views": dims.views, "format": int(f.attrs["format_version"]),
                        "segments": dims.segments,
                        "visual_dim": dims.visual_dim, "audio_dim": dims.audio_dim,
                        "text_dim": f["text/video"].shape[1], "classes": f["classes/name"].shape[0],
                        "random_weights": random_weights_note(f.attrs["config"])}
