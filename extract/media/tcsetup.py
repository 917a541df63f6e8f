"""The optional torchcodec decoder (``pip install cavnet[torchcodec]``): its pieces found, and loaded, without a
traceback.

torchcodec is PyTorch's own decoder; each release is built for one torch (0.11 for torch 2.11, 0.10 for 2.10,
...). Besides its wheel it needs:

- **FFmpeg's shared libraries**, one major version between 4 and 8 (the wheel ships none, and PyAV's bundled
  copy is private to PyAV): on Debian or Ubuntu the runtime packages (``tools/ffmpeg_libs.sh`` installs
  them: ``libavcodec59``, ``libavformat59``, ... on Debian 12), elsewhere any shared FFmpeg build on the
  loader's path;
- for the **CUDA build** (torchcodec 0.11.0 on PyPI is one: it links ``libnppicc.so.13``), NVIDIA's NPP
  colour-conversion library, which the ``nvidia-npp`` wheel puts in ``site-packages/nvidia/cu13/lib``,
  outside the loader's path: :func:`load` loads it from there before torchcodec.

:func:`missing_pieces` names what is missing, one line per piece; :func:`load` imports torchcodec or raises
:class:`TorchcodecUnavailable` with those lines. Standard library only at import.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata as metadata
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from cavnet.errors import CavnetError

# torchcodec's release for each torch (its compatibility table); cavnet's extra pins the 2.11 one.
TORCHCODEC_FOR_TORCH = {"2.11": "0.11", "2.10": "0.10", "2.9": "0.9"}
TORCHCODEC_PIN = "torchcodec==0.11.0"
NPP_PIN = "nvidia-npp==13.0.2.21"
# Sonames torchcodec links per FFmpeg major version (avutil, avcodec, avformat, avdevice, avfilter, swscale,
# swresample).
FFMPEG_SONAMES = {
    8: ("libavutil.so.60", "libavcodec.so.62", "libavformat.so.62", "libavdevice.so.62", "libavfilter.so.11",
        "libswscale.so.9", "libswresample.so.6"),
    7: ("libavutil.so.59", "libavcodec.so.61", "libavformat.so.61", "libavdevice.so.61", "libavfilter.so.10",
        "libswscale.so.8", "libswresample.so.5"),
    6: ("libavutil.so.58", "libavcodec.so.60", "libavformat.so.60", "libavdevice.so.60", "libavfilter.so.9",
        "libswscale.so.7", "libswresample.so.4"),
    5: ("libavutil.so.57", "libavcodec.so.59", "libavformat.so.59", "libavdevice.so.59", "libavfilter.so.8",
        "libswscale.so.6", "libswresample.so.4"),
    4: ("libavutil.so.56", "libavcodec.so.58", "libavformat.so.58", "libavdevice.so.58", "libavfilter.so.7",
        "libswscale.so.5", "libswresample.so.3"),
}
INSTALL_HINT = "pip install 'cavnet[torchcodec]'"
_LOADED: dict[str, ModuleType] = {}


class TorchcodecUnavailable(CavnetError):
    """A piece torchcodec needs is missing; the message names each one."""


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def ffmpeg_major(loadable: Callable[[str], bool] = _loadable) -> int | None:
    """The newest FFmpeg major version (4-8) whose shared libraries all load, or None."""
    return next((major for major, names in FFMPEG_SONAMES.items() if all(loadable(n) for n in names)), None)


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("torchcodec")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def npp_needed(package: Path | None) -> list[str]:
    """The NPP sonames torchcodec's core libraries link (none for a CPU-only build); read from the files,
    without loading them."""
    needed: set[str] = set()
    for lib in glob.glob(str(package / "libtorchcodec_core*.so")) if package else []:
        needed.update(m.decode() for m in re.findall(rb"libnpp\w+\.so\.\d+", Path(lib).read_bytes()))
    return sorted(needed)


def npp_file(soname: str, roots: list[str] | None = None) -> str | None:
    """Where an ``nvidia-npp`` wheel put ``soname`` (``nvidia/*/lib`` under a ``sys.path`` entry), or None."""
    for root in roots if roots is not None else sys.path:
        for path in sorted(glob.glob(os.path.join(root or ".", "nvidia", "*", "lib", soname))):
            return path
    return None


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""


def missing_pieces(loadable: Callable[[str], bool] = _loadable, roots: list[str] | None = None,
                   package: Path | None | bool = True) -> list[str]:
    """One line per missing piece of the torchcodec decoder; empty when all are there. ``loadable``,
    ``roots`` (the folders searched for NPP) and ``package`` (torchcodec's folder; True: find it) are seams
    for the tests."""
    problems = []
    package = _package_dir() if package is True else package
    if package is None:
        problems.append(f"torchcodec: not installed ({INSTALL_HINT}, which pins {TORCHCODEC_PIN} for torch 2.11)")
    else:
        have, torch = metadata.version("torchcodec"), _torch_version()
        want = TORCHCODEC_FOR_TORCH.get(".".join(torch.split(".")[:2]))
        if want and not have.startswith(want + "."):
            problems.append(f"torchcodec: {have} is built for another torch than the installed {torch} "
                            f"(pip install 'torchcodec=={want}.*')")
    if ffmpeg_major(loadable) is None:
        problems.append("FFmpeg: no shared libraries of major version 4-8 on the loader's path (libavcodec.so.58-62 "
                        "and the rest; PyAV's own copy is private): run tools/ffmpeg_libs.sh (Debian/Ubuntu, as root) "
                        "or install a shared FFmpeg build")
    for soname in npp_needed(package) if package else ["libnppicc.so.13"]:
        if not loadable(soname) and npp_file(soname, roots) is None:
            problems.append(f"nvidia-npp: {soname} not found (torchcodec's CUDA build links it): pip install {NPP_PIN}")
    return problems


def _cause(exc: BaseException) -> str:
    """The line of torchcodec's long loading report that names the cause."""
    text = str(exc)
    found = re.search(r"OSError: (\S+: cannot open shared object file[^\n]*)", text) or \
        re.search(r"(undefined symbol: \S+)", text)
    return found.group(1) if found else (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def load() -> ModuleType:
    """``torchcodec``, imported once per process after its NPP libraries were loaded from the ``nvidia-npp``
    wheel; :class:`TorchcodecUnavailable` (one line per missing piece) when it cannot be."""
    if "torchcodec" in _LOADED:
        return _LOADED["torchcodec"]
    problems = missing_pieces()
    if problems:
        raise TorchcodecUnavailable("the torchcodec decoder is unavailable: " + "; ".join(problems))
    for soname in npp_needed(_package_dir()):
        path = soname if _loadable(soname) else npp_file(soname)
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)  # torchcodec's libraries find it by soname from here on
    try:
        import torchcodec
        import torchcodec.decoders  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - whatever stops it loading is the finding
        raise TorchcodecUnavailable(f"the torchcodec decoder does not load: {_cause(exc)}") from None
    _LOADED["torchcodec"] = torchcodec
    return torchcodec


def describe() -> str:
    """One line for the install check: torchcodec's version, the FFmpeg it loaded, its build."""
    tc = load()
    build = "CUDA build, NPP from nvidia-npp" if npp_needed(_package_dir()) else "CPU-only build"
    return f"{metadata.version('torchcodec')} (FFmpeg {tc.ffmpeg_major_version} shared libraries, {build})"
