"""Filesystem failures as one line naming the path and the cause, and outputs checked before a run.

h5py reports some failures of the HDF5 library as ``RuntimeError`` (e.g. a full disk while a file is
flushed or closed: "Can't decrement id ref count", "Slist already enabled?") whose text hides the errno;
:func:`describe` then asks the filesystem itself (free space, writability) for the cause.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from cavnet.errors import CavnetError

CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
          errno.ENAMETOOLONG: "file name too long", errno.ENOTDIR: "a path component is not a directory",
          errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
          errno.EISDIR: "is a directory", errno.ENOENT: "no such file or directory", errno.EIO: "I/O error"}
_NAME_MAX = 255


def cause(exc: BaseException, path: Path | None = None) -> str:
    """A short cause for a filesystem failure: ``disk full``, ``read-only file system`` ..."""
    code = getattr(exc, "errno", None)
    if code in CAUSES:
        return CAUSES[code]
    text = str(exc)
    for code, name in CAUSES.items():
        if os.strerror(code) in text:
            return name
    if path is not None:
        folder = Path(path).parent
        try:
            st = os.statvfs(folder if folder.exists() else ".")
            if st.f_bavail * st.f_frsize < 1 << 20:
                return "disk full"
        except OSError:
            pass
        if folder.exists() and not os.access(folder, os.W_OK):
            return "permission denied"
    return f"{exc.__class__.__name__}: {text}"


def describe(exc: BaseException, path: Path, doing: str) -> str:
    """``{doing}: {cause} ({path})`` on one line."""
    return f"{doing}: {cause(exc, path)} ({path})"


def check_writable(output: Path, names: Sequence[str] = (), what: str = "--out") -> None:
    """Refuse an output cavnet could not write, before any work: its folder must be creatable and
    writable (a byte written to a probe file: a full disk is refused too), and every file name it will use
    (``names``, with the longest tmp suffix) must fit."""
    output = Path(output)
    longest = [*output.parts, output.name + ".1234567-abcdef12.tmp", output.name + ".lock", *names]
    for name in longest:
        if len(os.fsencode(name)) > _NAME_MAX:
            raise CavnetError(f"{what} {output}: file name too long ({len(os.fsencode(name))} bytes in "
                              f"{name[:40]}..., the limit is {_NAME_MAX})")
    folder = output.parent
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CavnetError(f"{what} {output} is not writable: a path component is not a directory ({existing})")
    # the probe goes into the nearest folder that exists: the folders still to be made are made by the
    # command when it writes, so a refused run leaves no empty folder behind
    probe = (existing or Path.cwd()) / f".cavnet-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"\0")  # a full filesystem still creates empty files: a byte needs a block
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        raise CavnetError(f"{what} {output} is not writable: {cause(exc, probe)} ({existing or folder})") from None
    if output.exists() and not os.access(output, os.W_OK):
        raise CavnetError(f"{what} {output} is not writable: permission denied")


def as_os_error(exc: BaseException, path: Path) -> OSError:
    """An h5py ``RuntimeError`` (or any failure) while writing ``path`` as the ``OSError`` it stands for;
    call it before the partial file is removed, so that a full disk is still full."""
    if isinstance(exc, OSError) and exc.errno:
        return exc
    why = cause(exc, path)
    code = next((c for c, name in CAUSES.items() if name == why), errno.EIO)
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 100 else detail[:100] + "..."
    return OSError(code, f"{os.strerror(code)} (HDF5: {exc.__class__.__name__}: {detail})", str(path))


@contextlib.contextmanager
def h5_dealloc_errors() -> Iterator[list[str]]:
    """Collect, instead of printing, the errors h5py raises while it frees objects of a file whose writes
    fail ("Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'" and a traceback on stderr, once per
    object, on a full disk); the caller reports the failure once, as one line."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if "h5py" in repr(unraisable.object) or "h5py" in str(getattr(unraisable, "err_msg", "")):
            seen.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")
        else:
            previous(unraisable)

    # h5py (Cython, full tracebacks) also prints each traceback to sys.stderr itself: hold stderr back,
    # and give it back unless h5py's freeing errors are in it
    held, stderr = io.StringIO(), sys.stderr
    sys.unraisablehook, sys.stderr = hook, held
    try:
        yield seen
    finally:
        sys.unraisablehook, sys.stderr = previous, stderr
        text = held.getvalue()
        if text and "h5py/_objects.pyx" not in text:
            stderr.write(text)
