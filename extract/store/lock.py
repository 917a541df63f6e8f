"""One writer per output: an exclusive ``fcntl.flock`` on ``{output}.lock``, held for the whole run.

The OS drops a flock when its process dies, so a lock left by a killed run is taken over at once; the
lock file's text (pid, host, start time) names the holder in the refusal a second writer gets. The
holder removes the file before it lets go, and a writer that locked a removed file retries on the new one.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from cavnet.errors import CavnetError
from cavnet.extract.store.fsfault import describe


class LockedError(CavnetError):
    """Another live process writes the same output."""


def lock_path(output: Path) -> Path:
    """``STORE.h5`` -> ``STORE.h5.lock``; a run folder ``runs/a`` -> ``runs/a.lock`` (beside, not inside)."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextlib.contextmanager
def output_lock(output: Path, what: str = "output") -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block; refuse at once if another process holds it."""
    path = lock_path(output)
    fd = _acquire(path, output, what)
    try:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still locked: a waiting writer sees the inode change and retries
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(path: Path, output: Path, what: str) -> int:
    """A descriptor of ``path`` holding its flock; the file is re-opened when its holder unlinked it."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CavnetError(describe(exc, path, f"cannot lock {what} {output}")) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise LockedError(f"{what} {output} is in use by {holder} (lock {path}); "
                              "wait for that run to end or use another --out") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed this file as it finished: lock the new one
