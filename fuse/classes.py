"""Class subsets of a store (``--classes FILE`` or ``--classes kinetics-sounds``): train and score on some
of a store's classes without re-extraction. ``SubsetStore`` is a read-only view of an open ``FeatureStore``
whose class table is the subset, re-indexed in the subset's order; only the videos whose label is in the
subset are selected, whatever their split; every text set is cut to the subset's rows.

Kinetics-Sounds: the audible classes of Kinetics-400, introduced by Arandjelović & Zisserman, "Look, Listen
and Learn" (ICCV 2017; 34 classes of an earlier Kinetics release). The list below is the 31-class version the
modality-imbalance literature trains on (OGM-GE, Peng et al. CVPR 2022: "31 classes"; BalanceBenchmark), as
its public download scripts spell it; L3's own table could not be read where this was written. The names are
spelled as in the official Kinetics-400 CSVs (checked against torchvision's Kinetics-400 category list in
tests/test_classes.py).
"""

from __future__ import annotations

import difflib
from dataclasses import replace

import numpy as np

from cavnet.errors import CavnetError
from cavnet.extract.files.inputs import text_lines
from cavnet.extract.store.reader import FeatureStore, Features, RowTable

KINETICS_SOUNDS = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball", "laughing",
    "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar", "playing clarinet",
    "playing drums", "playing guitar", "playing harmonica", "playing keyboard", "playing organ", "playing piano",
    "playing saxophone", "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes",
    "tap dancing", "tapping guitar", "tapping pen", "tickling",
)
NAMED = {"kinetics-sounds": KINETICS_SOUNDS}


def class_subset(spec: str, have: list[str]) -> list[str]:
    """The subset ``spec`` names (a shipped list's name, or a file of one class name a line), checked
    against the store's classes ``have``: a name it lacks is refused in one line, with a close match."""
    names = list(NAMED[spec]) if spec in NAMED else text_lines(spec, "--classes")
    if not names:
        raise CavnetError(f"--classes {spec}: names no class")
    seen = set()
    for name in names:
        if name not in have:
            close = difflib.get_close_matches(name, have, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CavnetError(f"--classes {spec}: the store has no class {name!r}{hint}")
        if name in seen:
            raise CavnetError(f"--classes {spec}: class {name!r} is listed twice")
        seen.add(name)
    return names


def store_view(store: FeatureStore, names: list[str] | None, what: str) -> FeatureStore | SubsetStore:
    """``store`` itself (``names`` None) or its view through ``names``, each refused if the store lacks it."""
    if names is None:
        return store
    missing = [n for n in names if n not in store.class_names]
    if missing:
        raise CavnetError(f"{what}: {store.path} has no class {missing[0]!r}")
    return SubsetStore(store, list(names))


class SubsetStore:
    """``store`` seen through a class subset ``names`` (each a class of the store): labels re-indexed to
    the subset's order, rows of other classes (and unlabelled ones) never selected, class tables cut."""

    def __init__(self, store: FeatureStore, names: list[str]) -> None:
        self._store, self.class_names = store, list(names)
        self.ids = np.array([store.class_names.index(n) for n in names], np.int64)  # subset -> store class
        self._remap = np.full(len(store.class_names) + 1, -1, np.int64)  # store class (-1 last) -> subset
        self._remap[self.ids] = np.arange(len(names))
        self.class_embedding = store.class_embedding[self.ids]

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def _labels(self, labels: np.ndarray) -> np.ndarray:
        return self._remap[np.asarray(labels, np.int64)]

    def rows(self) -> RowTable:
        r = self._store.rows()
        return _SubsetRows(r.ids, r.splits, self._labels(r.labels), r.statuses, r.audio_present)

    def read(self, index: np.ndarray) -> Features:
        f = self._store.read(index)
        return replace(f, labels=self._labels(f.labels))

    def split(self, name: str | None = None, labelled: bool = False) -> Features:
        return self.read(self.rows().select(name, labelled))

    def class_prompts(self) -> list[str]:
        prompts = self._store.class_prompts()
        return [prompts[int(i)] for i in self.ids]

    def text_set(self, name: str = "default"):
        s = self._store.text_set(name)
        return replace(s, texts=[s.texts[int(i)] for i in self.ids], embedding=s.embedding[self.ids])


class _SubsetRows(RowTable):
    def select(self, split: str | None, labelled: bool = True) -> np.ndarray:
        """Only videos of the subset's classes, labelled or not asked (an unlabelled video is in no subset)."""
        return RowTable.select(self, split, labelled=True)


def with_classes(store: FeatureStore, spec: str | None) -> FeatureStore | SubsetStore:
    """``store`` itself (``spec`` None) or its view through the subset ``spec`` names."""
    return store if spec is None else SubsetStore(store, class_subset(spec, list(store.class_names)))
