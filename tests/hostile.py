"""Helpers of the hostile-conditions suites: damaged copies of a store, and the one-line-error check."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import h5py

Damage = Callable[[Path], None]


def zeros(offset: int, size: int = 4096) -> Damage:
    """Overwrite ``size`` bytes at ``offset`` with zeros (what a torn write or a bad sector leaves)."""
    def apply(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[offset:offset + size] = bytes(size)
        path.write_bytes(bytes(data))
    return apply


def truncate(fraction: float) -> Damage:
    def apply(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return apply


def drop_dataset(name: str) -> Damage:
    def apply(path: Path) -> None:
        with h5py.File(path, "a") as f:
            del f[name]
    return apply


def set_attr(name: str, value: object) -> Damage:
    def apply(path: Path) -> None:
        with h5py.File(path, "a") as f:
            if value is None:
                del f.attrs[name]
            else:
                f.attrs[name] = value
    return apply


def damaged_copy(good: Path, folder: Path, damage: Damage, name: str = "store.h5") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(good, path)
    damage(path)
    return path


def one_line_error(result, needle: str = "", code: int = 2) -> str:
    """The CLI ended with exit ``code`` and exactly one ``cavnet: error:`` line holding ``needle``."""
    stderr = getattr(result, "stderr", "") or ""
    output = (getattr(result, "output", None) or getattr(result, "stdout", "") or "") + stderr
    assert "Traceback" not in output, output
    assert getattr(result, "exit_code", getattr(result, "returncode", None)) == code, output
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("cavnet: error: "), stderr
    assert needle in lines[0], lines[0]
    return lines[0]
