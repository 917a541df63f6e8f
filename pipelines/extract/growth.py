"""What an extract run has to do with the store already at ``--out``: nothing (it holds this corpus), grow
it (the corpus is a superset: only the new videos are extracted), or write it anew (no store yet).

A grown store keeps its rows where they were and appends the new videos in manifest order; the labels,
splits and class table of every row come from the new corpus. Anything else is refused: another
configuration (other spatial views among them: a store keeps its ``--views``/``--flip``, and one from before
views, format 1, has one), or a corpus that lacks some of the store's videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import Manifest
from cavnet.extract.store.headers import read_header
from cavnet.extract.store.reader import StoreIndex, damage_message, read_index


@dataclass(frozen=True)
class StorePlan:
    """``rows``: the store's videos in store order; ``todo``: those to extract; ``base``: the store to copy
    the others from (None for a new store); ``done``: nothing to do; ``classes_changed``: a sentence when
    the class table (and so the class ids) differs from the store's."""

    rows: Manifest
    todo: Manifest
    base: Path | None = None
    done: bool = False
    classes_changed: str = ""


def plan_store(out: Path, config: ExtractConfig, manifest: Manifest) -> StorePlan:
    if not out.exists():
        return StorePlan(manifest, manifest)
    index = _read_existing(out, config)
    ids, classes = index.ids, index.classes
    have, want = set(ids), {r.video_id for r in manifest.rows}
    missing = [i for i in ids if i not in want]
    if missing:
        raise CavnetError(f"{out} holds {len(missing)} videos this corpus does not list (e.g. {missing[0]}); a store "
                          "grows only by a superset of its corpus: use another --out")
    changed = ""
    if list(classes) != list(manifest.classes):
        added = sorted(set(manifest.classes) - set(classes))
        changed = (f"class table changed ({len(classes)} -> {len(manifest.classes)} classes"
                   + (f", new: {', '.join(added[:3])}{' ...' if len(added) > 3 else ''}" if added else "")
                   + "); class ids of existing classes may have moved: checkpoints trained on the old store are "
                   "refused")
    by_id = {r.video_id: r for r in manifest.rows}
    new = tuple(r for r in manifest.rows if r.video_id not in have)
    rows = Manifest(tuple(by_id[i] for i in ids) + new, manifest.classes)
    if not new and not changed and [r.label for r in rows.rows] == index.labels:
        return StorePlan(rows, Manifest((), manifest.classes), out, done=True)
    return StorePlan(rows, Manifest(new, manifest.classes), out, classes_changed=changed)


def _read_existing(out: Path, config: ExtractConfig) -> StoreIndex:
    """The index of the store at ``out``; refuses a store of another configuration."""
    if not out.is_file():
        kind = "a folder" if out.is_dir() else "not a regular file"
        raise CavnetError(f"--out {out} is {kind}, not a store file; use another --out")
    headers = read_header(out)  # in a child with a time bound: a damaged file can make HDF5 spin forever
    if headers.error:
        raise CavnetError(f"{damage_message(out, headers.error)}; use another --out or delete it")
    try:
        index = read_index(out)
    except (OSError, KeyError, RuntimeError, TypeError) as exc:
        raise CavnetError(f"{out} exists but is not a cavnet store ({exc}); use another --out") from None
    recorded = ExtractConfig.from_json(index.config, f"{out} config")
    if recorded.views != config.views:  # a store from before views (format 1) records none: one view
        raise CavnetError(f"{out} holds {_views(recorded)} per clip, this extraction asks {_views(config)}: a store "
                          "grows only with the views it has; use another --out")
    if recorded.content_key() != config.content_key():
        diff = first_difference(recorded.content_key(), config.content_key())
        raise CavnetError(f"{out} was extracted with a different configuration ({diff}); use another --out")
    return index


def _views(config: ExtractConfig) -> str:
    v = config.views
    return f"{v.count} view(s) (--views {v.crops}{' --flip' if v.flip else ''})"


def first_difference(a: dict, b: dict, prefix: str = "") -> str:
    """The first field (dotted path) where two config dicts differ, with both values."""
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                return first_difference(a[k], b[k], prefix + k + ".")
            return f"{prefix}{k}: recorded {a.get(k)!r}, asked {b.get(k)!r}"
    return "none"
