"""Fault-injection hooks for the reliability tests (docs/reliability.md). Inert unless a variable is set.

They stand in for faults a test cannot cause on demand: a decoder that segfaults on one file, a file on
a hung mount, a disk that fills up. The variables are read at the moment of the fault, in whichever
process does the work: Dask workers inherit them from the client's environment (``client.run(arm, ...)``
arms a running cluster), and decode processes get those of the worker that hands them a video.

``CAVNET_FAULT_CRASH_ON=SUBSTR``  opening a video (extract, probe, prepare) whose path contains SUBSTR SIGKILLs
                                  the process that opens it (a decoder that segfaults, the OOM killer)
``CAVNET_FAULT_HANG_ON=SUBSTR``   opening such a video, or committing an HDF5 file whose name contains
                                  SUBSTR, sleeps ``CAVNET_FAULT_HANG_SECONDS`` (default 60) first; with
                                  ``CAVNET_FAULT_HANG_UNTIL=FILE`` it waits until FILE exists instead (the
                                  seconds are then only an outer bound): a test releases it on an event
``CAVNET_FAULT_ONCE=FILE``        crash and hang fire only in the first process to create FILE
``CAVNET_FAULT_DISK_FULL=SUBSTR`` committing an HDF5 file whose name contains SUBSTR fails with ENOSPC
                                  after part of it was written (as a full disk does)
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Mapping


def armed() -> dict[str, str]:
    """The fault variables set in this process. A worker hands them to the decode processes it starts, so
    that a fault reaches them however long ago their ``forkserver`` was started."""
    return {k: v for k, v in os.environ.items() if k.startswith("CAVNET_FAULT_")}


def _armed(env: Mapping[str, str], variable: str, text: str) -> bool:
    needle = env.get(variable)
    return bool(needle) and needle in text


def _first_time(env: Mapping[str, str]) -> bool:
    """True unless ``CAVNET_FAULT_ONCE`` names a file that already exists (creating it is atomic)."""
    marker = env.get("CAVNET_FAULT_ONCE")
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _hang(env: Mapping[str, str]) -> None:
    seconds, until = float(env.get("CAVNET_FAULT_HANG_SECONDS", "60")), env.get("CAVNET_FAULT_HANG_UNTIL")
    if not until:
        time.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while not os.path.exists(until) and time.monotonic() < deadline:
        time.sleep(0.05)


def before_open(path: str, env: Mapping[str, str] | None = None) -> None:
    """Called with each video's path just before it is opened; ``env``: the faults armed by the process
    that handed over the work (default: this process's environment)."""
    env = os.environ if env is None else env
    if _armed(env, "CAVNET_FAULT_CRASH_ON", path) and _first_time(env):
        os.kill(os.getpid(), signal.SIGKILL)
    if _armed(env, "CAVNET_FAULT_HANG_ON", path) and _first_time(env):
        _hang(env)


def before_commit(path: str) -> None:
    """Called after an HDF5 file's content was written to its tmp name, before it is fsynced and renamed."""
    name = os.path.basename(path)
    if _armed(os.environ, "CAVNET_FAULT_HANG_ON", name) and _first_time(os.environ):
        _hang(os.environ)
    if _armed(os.environ, "CAVNET_FAULT_DISK_FULL", name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def arm(values: dict[str, str | None]) -> None:
    """Set (or, for None, unset) fault variables in this process: ``client.run(arm, {...})`` arms the
    workers of a cluster that is already running (processes they start later inherit them)."""
    for name, value in values.items():
        if not name.startswith("CAVNET_FAULT_"):
            raise ValueError(f"{name} is not a fault variable")
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
