"""Label-text sets of a feature store: several class-embedding tables, each keyed by a name (docs/store.md).

``default`` is the table extraction writes (``classes/prompt`` + ``classes/embedding``, the prompt
template): every store has it, and a store from before text sets has only it, read unchanged. Every other
set NAME lives in the group ``classes/sets/NAME``:

    embedding  (C, Dt) float32  unit rows, one per class (several texts: the mean of their unit
                                embeddings, normalised again)
    text       (C,) str         what was embedded for each class, several texts joined by newlines
    attributes kind (name, template, ensemble, descriptions), source (JSON: the templates, or the
               descriptions file and its sha256), text_model (the fingerprint of the sentence encoder,
               which must be the store's own)

``add_text_sets`` grows a store by new sets without touching its features: under the store's
single-writer lock, it writes a copy (HDF5 copies every object as it is stored, chunk by chunk) with the
new sets to a tmp name, fsyncs it and renames it over the store, so a kill leaves the old store whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from cavnet.extract.store.lock import output_lock
from cavnet.extract.store.writer import StoreError, commit_h5

DEFAULT = "default"
GROUP = "classes/sets"
KINDS = ("name", "template", "ensemble", "descriptions")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TextSet:
    """One class-embedding table: ``texts[c]`` the texts embedded for class c, ``embedding`` (C, Dt)."""

    name: str
    kind: str
    texts: list[list[str]]
    embedding: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    text_model: str = ""


def check_name(name: str) -> None:
    """A set name as a store keeps it: letters, digits, ``_ . -``, at most 64; ``default`` is extraction's."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"text set name {name!r}: use letters, digits, '_', '.' or '-' (at most 64)")
    if name == DEFAULT:
        raise StoreError("text set 'default' is the store's own prompt table; give the new set another name")


def set_names(f: h5py.File) -> list[str]:
    """``default`` first, then the store's other sets in sorted order."""
    return [DEFAULT] + (sorted(f[GROUP].keys()) if GROUP in f else [])


def _strings(ds: h5py.Dataset) -> list[str]:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in ds[()]]


def read_set(f: h5py.File, name: str, where: object) -> TextSet:
    """The text set ``name`` of the open store ``f`` (``where`` names it in errors); ``StoreError``
    naming the sets there are when it has no such set."""
    names = set_names(f)
    if name not in names:
        raise StoreError(f"{where}: no text set {name!r}; it has {', '.join(names)} (add one with "
                         f"`cavnet text --store {where} --add-set NAME`)")
    if name == DEFAULT:
        template = json.loads(f.attrs["config"]).get("prompt_template", "") if "config" in f.attrs else ""
        return TextSet(DEFAULT, "template", [[p] for p in _strings(f["classes/prompt"])],
                       f["classes/embedding"][()].astype(np.float32), {"templates": [template]},
                       str(f.attrs.get("text_model", "")))
    g = f[GROUP][name]
    return TextSet(name, str(g.attrs["kind"]), [t.split("\n") for t in _strings(g["text"])],
                   g["embedding"][()].astype(np.float32), json.loads(g.attrs.get("source", "{}")),
                   str(g.attrs.get("text_model", "")))


def _write_set(f: h5py.File, s: TextSet) -> None:
    path = f"{GROUP}/{s.name}"
    if path in f:
        del f[path]
    g = f.create_group(path)
    g["embedding"] = np.asarray(s.embedding, np.float32)
    g.create_dataset("text", data=["\n".join(t) for t in s.texts], dtype=h5py.string_dtype("utf-8"))
    g.attrs.update(kind=s.kind, source=json.dumps(s.source, sort_keys=True), text_model=s.text_model)


def add_text_sets(path: Path, sets: Sequence[TextSet], replace: bool = False) -> None:
    """Write ``sets`` into the store at ``path`` (a new copy renamed over it, under its lock). A set whose
    name the store has already is refused unless ``replace``; a table of another shape is refused."""
    path = Path(path)
    with output_lock(path, "store"):
        with h5py.File(path, "r") as f:
            have, shape = set_names(f), f["classes/embedding"].shape
            for s in sets:
                check_name(s.name)
                if s.name in have and not replace:
                    raise StoreError(f"{path}: it has a text set {s.name!r} already (--replace to write it anew)")
                if s.embedding.shape != shape or len(s.texts) != shape[0]:
                    raise StoreError(f"text set {s.name!r} is {s.embedding.shape}, the store's classes {shape}")

        def write(dst: h5py.File) -> None:
            with h5py.File(path, "r") as src:
                dst.attrs.update(dict(src.attrs))
                for key in src:
                    src.copy(src[key], dst, name=key)
            for s in sets:
                _write_set(dst, s)

        commit_h5(path, write)


def copy_text_sets(base: Path, dst: h5py.File) -> None:
    """A grown store keeps its base's text sets when its class table is the base's (the same names in the
    same order); with another table they would index other classes, so they are left out."""
    with h5py.File(base, "r") as src:
        if GROUP in src and _strings(src["classes/name"]) == _strings(dst["classes/name"]):
            src.copy(src[GROUP], dst, name=GROUP)


def check_text_sets(f: h5py.File, problems: list[str]) -> list[str]:
    """``cavnet check``: every set's layout against the class table, finite unit rows, a known kind and the
    store's own sentence encoder; problems appended as lines. Returns the set names."""
    names = set_names(f)
    c, dt = f["classes/embedding"].shape
    store_model = str(f.attrs.get("text_model", ""))
    for name in names[1:]:
        g, where = f[GROUP][name], f"text set {name!r}"
        if not isinstance(g, h5py.Group) or "embedding" not in g or "text" not in g:
            problems.append(f"{where}: not a group with embedding and text")
            continue
        emb, text = g["embedding"], g["text"]
        if emb.shape != (c, dt) or emb.dtype != np.float32:
            problems.append(f"{where}: embedding is {emb.shape} {emb.dtype}, expected {(c, dt)} float32")
            continue
        if text.shape != (c,) or h5py.check_string_dtype(text.dtype) is None:
            problems.append(f"{where}: text is {text.shape}, expected {(c,)} str")
        values = emb[()].astype(np.float64)
        norms = np.linalg.norm(values, axis=1)
        if not np.isfinite(values).all() or (c and not np.allclose(norms, 1.0, atol=1e-3)):
            problems.append(f"{where}: rows not finite unit vectors")
        if str(g.attrs.get("kind", "")) not in KINDS:
            problems.append(f"{where}: unknown kind {g.attrs.get('kind')!r}")
        if str(g.attrs.get("text_model", "")) != store_model:
            problems.append(f"{where}: embedded by {g.attrs.get('text_model')!r}, the store by {store_model!r}")
    return names
