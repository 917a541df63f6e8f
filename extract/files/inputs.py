"""The one door for text files cavnet reads (label lists, class lists, templates, descriptions, manifests):
a regular file (a FIFO or a device is refused before it is opened, so it cannot block), of a bounded size,
in UTF-8, with a clear one-line error naming the file, and the byte offset of a byte that is not UTF-8."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cavnet.errors import CavnetError

MAX_TEXT_BYTES = 256 * 2**20  # a Kinetics-700 CSV is about 50 MB


def read_text(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of ``path`` (``what``: the option or role that named it, for the error)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CavnetError(f"{what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CavnetError(f"{what} {path} is a folder, not a text file")
    if not stat.S_ISREG(info.st_mode):
        raise CavnetError(f"{what} {path} is not a regular file (a pipe, socket or device); give a text file")
    if info.st_size > max_bytes:
        raise CavnetError(f"{what} {path} is {info.st_size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} "
                          "MiB a text input may be")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CavnetError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CavnetError(f"{what} {path} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                          "(save it as UTF-8)") from None


def text_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The non-empty lines of a text file, stripped; lines starting with ``#`` are comments."""
    lines = [ln.strip() for ln in read_text(path, what).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]
