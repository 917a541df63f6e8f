"""The manifest: one row per video of a corpus, in a stable order, whatever state the file is in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManifestRow:
    """One video. ``label`` is the class index (-1 when unknown); ``exists`` is False for a listed
    file that is not on disk (it is kept, and ends with status ``missing_file``)."""

    video_id: str
    path: str
    label: int
    label_name: str
    split: str
    text: str = ""
    exists: bool = True


@dataclass(frozen=True)
class Manifest:
    """Rows in manifest order and the class names, whose index is the class id."""

    rows: tuple[ManifestRow, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, splits: tuple[str, ...] | None = None, limit: int | None = None) -> "Manifest":
        rows = [r for r in self.rows if splits is None or r.split in splits]
        if limit is not None:
            rows = rows[:limit]
        return Manifest(rows=tuple(rows), classes=self.classes)
