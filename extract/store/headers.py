"""Read HDF5 files' headers (root attributes, object headers) in a child process with a time bound, before
this process touches them.

Damaged HDF5 metadata can make the library spin forever (a few KB of zeros in the object headers loops
inside ``H5Aread``) or raise anything (``OSError: bad global heap``, ``KeyError``, ``RuntimeError``). A
child (``python -c``, h5py only) reads every root attribute and walks every object, printing one JSON
line per file as it finishes it; a file whose line does not come within ``timeout`` seconds (counted once
the child has started and imported h5py, however busy the machine) is damaged, and the child is killed.
Only files the child read cleanly are then opened here.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


STARTUP_SECONDS = 600.0  # a safety net for the child's start, which the per-file bound does not include


def header_timeout() -> float:
    """Seconds one file's metadata may take: ``CAVNET_STORE_PROBE_TIMEOUT`` (default 20)."""
    return float(os.environ.get("CAVNET_STORE_PROBE_TIMEOUT", "20"))

_CHILD = r"""
import json, sys
import h5py
print("ready", flush=True)
for path in sys.argv[1:]:
    out = {"path": path}
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            out["attrs"] = {k: (v if isinstance(v, (str, int, float)) else str(v)) for k, v in attrs.items()}
            sets = {}
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    sets[name] = [list(obj.shape), str(obj.dtype)]
                    dict(obj.attrs)
            f.visititems(visit)
            out["datasets"] = sets
    except BaseException as exc:
        out["error"] = f"{exc.__class__.__name__}: {exc}"
    print(json.dumps(out, default=str), flush=True)
"""


@dataclass(frozen=True)
class Headers:
    """What the child saw of one file: ``error`` ('' when it read cleanly), root attributes, and each
    dataset's ``[shape, dtype]``."""

    path: Path
    error: str = ""
    attrs: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)


def read_headers(paths: Sequence[Path], timeout: float | None = None) -> list[Headers]:
    """The headers of ``paths``, in order; a file that takes longer than ``timeout`` seconds is reported damaged."""
    timeout = header_timeout() if timeout is None else timeout
    results: list[Headers] = []
    rest = [Path(p) for p in paths]
    while rest:
        done = _run_child(rest, timeout)
        results += done
        rest = rest[len(done):]
        if rest:  # the child hung on rest[0] (or died on it)
            results.append(Headers(rest[0], f"reading its metadata did not finish within {timeout:.0f} s "
                                            "(damaged HDF5 headers)"))
            rest = rest[1:]
    return results


def read_header(path: Path, timeout: float | None = None) -> Headers:
    return read_headers([path], timeout)[0]


def _run_child(paths: list[Path], timeout: float) -> list[Headers]:
    """Results of the files the child finished, in order; it is killed when one takes over ``timeout``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAVNET_FAULT_")}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, paths)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
    found = []
    try:
        try:  # the clock runs per file, once the child has started and imported h5py (slow on a busy machine)
            started = lines.get(timeout=STARTUP_SECONDS) == "ready\n"
        except queue.Empty:
            started = False
        for path in paths if started else ():
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                break
            if line is None:
                break
            try:
                d = json.loads(line)
            except ValueError:
                break
            found.append(Headers(path, d.get("error", ""), d.get("attrs", {}), d.get("datasets", {})))
    finally:
        proc.kill()
        proc.wait()
    return found
