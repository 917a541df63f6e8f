"""The one door for what cavnet writes: every output of every command (stores, run folders, metrics,
predictions, exports, corpora, probe tables) is checked before the work starts and written through here.

- :func:`check_outputs`: before any work, each output must be writable (its folder creatable, its names not
  too long), must not be one of the command's inputs, and
  a folder must be empty or carry this command's marker (``.cavnet-output.json``, written by
  :func:`claim_folder`; with a ``key`` it must also be the same work, e.g. the same store and settings);
- :func:`atomic` / :func:`write_text` / :func:`write_json`: a file appears whole or not at all (tmp, fsync,
  rename), and a filesystem failure is one line naming the path and the cause;
- :class:`RowWriter`: a table written row by row as the rows are done (predictions), kept whole on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from cavnet.errors import CavnetError
from cavnet.extract.store.fsfault import CAUSES, check_writable, describe

MARKER = ".cavnet-output.json"


@dataclass(frozen=True)
class Output:
    """One thing a command writes: ``path``, the option that named it (``what``), and whether it is a folder."""

    path: Path
    what: str = "--out"
    folder: bool = False


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder cavnet wrote (None: none, or not one of cavnet's)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "command" in data else None


def _check_folder(out: Output, command: str, key: dict[str, Any] | None, legacy: Sequence[str]) -> None:
    folder = out.path
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CavnetError(f"{out.what} {folder} is a file, not a folder; use another {out.what}")
    entries = [p.name for p in folder.iterdir()]
    if not entries:
        return
    marker = read_marker(folder)
    if marker is None:
        if legacy and all((folder / name).exists() for name in legacy):
            return  # a folder this command wrote before it marked its folders
        raise CavnetError(f"{out.what} {folder} is not empty and was not written by cavnet {command} "
                          f"({len(entries)} entries, e.g. {sorted(entries)[0]}); use an empty or new folder")
    if marker["command"] != command:
        raise CavnetError(f"{out.what} {folder} holds the output of cavnet {marker['command']}, not of {command}; "
                          "use another folder")
    if key is not None and marker.get("key") not in (None, key):
        diff = next((k for k in sorted(set(key) | set(marker["key"])) if key.get(k) != marker["key"].get(k)), "?")
        raise CavnetError(f"{out.what} {folder} holds a {command} of other inputs or settings ({diff} differs); "
                          "use another folder, or the same inputs and settings to go on with it")


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Path] = (), command: str = "",
                  key: dict[str, Any] | None = None, legacy: Sequence[str] = ()) -> None:
    """Refuse, before any work, an output that cannot be written or would destroy what the command reads.

    ``inputs``: the files and folders the command reads; ``key``: what a folder output is the output of
    (checked against its marker); ``legacy``: names whose presence marks a folder this command wrote before
    folders carried markers (accepted once, then marked by :func:`claim_folder`)."""
    for out in outputs:
        with writing(out.path, out.what):  # e.g. a name too long for the filesystem, already at exists()
            _check_output(out, inputs, command, key, legacy)


def _check_output(out: Output, inputs: Sequence[Path], command: str, key: dict[str, Any] | None,
                  legacy: Sequence[str]) -> None:
    path = Path(out.path)
    for src in map(Path, inputs):
        if _same(path, src):
            raise CavnetError(f"{out.what} {path} is an input of this command ({src}); write elsewhere")
    if out.folder:
        _check_folder(Output(path, out.what, True), command, key, legacy)
        check_writable(path / MARKER, (), what=out.what)
    else:
        if path.is_dir():
            raise CavnetError(f"{out.what} {path} is a folder; give a file name")
        check_writable(path, (), what=out.what)


def claim_folder(folder: Path, command: str, key: dict[str, Any] | None = None, what: str = "--out") -> None:
    """Create ``folder`` (if needed) and mark it as ``command``'s output of ``key``."""
    with writing(folder, what):
        Path(folder).mkdir(parents=True, exist_ok=True)
        write_text(Path(folder) / MARKER, json.dumps({"command": command, "key": key}, indent=1, sort_keys=True),
                   what)


@contextlib.contextmanager
def writing(path: Path, what: str = "--out") -> Iterator[None]:
    """A filesystem failure in the block (full disk, read-only, name too long, a folder in the way) as one
    line naming ``path`` and the cause."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in CAUSES and not isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            raise
        raise CavnetError(describe(exc, Path(exc.filename or path), f"writing {what} {path} failed")) from None


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic(path: str | os.PathLike, what: str = "--out", mode: str = "w", sync: bool = True,
           **kwargs: Any) -> Iterator[IO]:
    """A file handle whose content becomes ``path`` only when the block ends without error (tmp, fsync,
    rename); otherwise nothing is left behind. Text mode is UTF-8 unless ``encoding`` says otherwise;
    ``sync`` False skips the fsync (many small files: the rename still never shows a partial file to a
    reader, only a power loss could)."""
    path = Path(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    tmp = _tmp(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, mode, **kwargs) as fh:
                yield fh
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str, what: str = "--out") -> None:
    """``path`` holds ``text`` (UTF-8), written atomically."""
    with atomic(path, what) as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, data: Any, what: str = "--out") -> None:
    """``path`` holds ``data`` as indented JSON, written atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n", what)


def csv_line(cells: list) -> str:
    """One CSV row as text, its line ending included (what :meth:`RowWriter.write` takes)."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue()


class RowWriter:
    """A table written row by row: each row is on disk (flushed) once :meth:`write` returns, in a tmp file
    that becomes ``path`` on :meth:`close` — also after Ctrl-C or an error, so the rows done are kept.
    ``header`` is written first; ``encode`` turns a row into text (e.g. a csv writer's line)."""

    def __init__(self, path: str | os.PathLike, what: str = "--out") -> None:
        self.path, self.what, self.rows = Path(path), what, 0
        self.tmp = _tmp(self.path)
        with writing(self.path, what):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.tmp, "w", encoding="utf-8", newline="")

    def write(self, text: str, row: bool = True) -> None:
        with writing(self.path, self.what):
            self.fh.write(text)
            self.fh.flush()
        self.rows += int(row)

    def close(self) -> None:
        """Make what was written ``path`` (whole rows only: every write is one or more complete lines)."""
        with writing(self.path, self.what):
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.path)

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            self.tmp.unlink(missing_ok=True)
