"""Install smoke check: load every native library cavnet needs, print the versions, compare with the lock.

    python tools/check_install.py [--lock requirements.lock]

Runs first in `make test` and `make demo` (and so in CI). A wheel built against another torch, a missing
FFmpeg library or an HDF5 mismatch fails here in seconds with one line naming the package, instead of
minutes later inside a test. The torchcodec decoder (an optional extra, in the project's lock) gets one line
per missing piece: its wheel, FFmpeg's shared libraries (tools/ffmpeg_libs.sh), NVIDIA's NPP. Exit 0 when
every check passes, 1 otherwise. Standard library only at the top: each package is imported inside its own
check.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import platform
import sys
from collections.abc import Callable
from pathlib import Path


def _torch() -> str:
    import torch

    torch.ones(2).add_(1)
    cuda = torch.version.cuda or "none"
    return f"{torch.__version__} (CUDA build {cuda}, GPU {'yes' if torch.cuda.is_available() else 'no'})"


def _torchvision() -> str:
    import torch
    import torchvision
    from torchvision.ops import nms

    nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
    return torchvision.__version__


def _torchaudio() -> str:
    import torch
    import torchaudio
    import torchaudio.functional as F

    F.resample(torch.zeros(1, 320), 32000, 16000)
    # The compiled extension is what breaks when torchaudio was built for another torch.
    from torchaudio import _extension  # noqa: F401

    if hasattr(_extension, "_init_extension"):
        _extension._init_extension()
    return torchaudio.__version__


def _av() -> str:
    import av

    av.codec.Codec("h264", "r")
    av.codec.Codec("aac", "w")
    ffmpeg = av.library_versions.get("libavcodec", ("?",))
    return f"{av.__version__} (libavcodec {'.'.join(map(str, ffmpeg))})"


def _h5py() -> str:
    import h5py
    import numpy as np

    with h5py.File("smoke.h5", "w", driver="core", backing_store=False) as f:
        f.create_dataset("x", data=np.arange(4, dtype=np.float16), compression="gzip")
        assert f["x"][3] == 3
    return f"{h5py.__version__} (HDF5 {h5py.version.hdf5_version})"


def _sentence_transformers() -> str:
    import sentence_transformers

    return sentence_transformers.__version__


def _dask() -> str:
    import dask
    import distributed

    return f"{dask.__version__} (distributed {distributed.__version__})"


CHECKS: dict[str, Callable[[], str]] = {
    "torch": _torch,
    "torchvision": _torchvision,
    "torchaudio": _torchaudio,
    "av": _av,
    "h5py": _h5py,
    "sentence-transformers": _sentence_transformers,
    "dask": _dask,
}


def torchcodec_problems(required: bool) -> tuple[str, list[str]]:
    """The optional torchcodec decoder (cavnet[torchcodec]): a line describing it, and one line per missing
    piece (its wheel, FFmpeg's shared libraries, NVIDIA's NPP). Missing pieces fail the check only when
    ``required`` (the lock pins torchcodec, as the project's does); else they are reported as not installed."""
    from cavnet.extract.media import tcsetup

    problems = tcsetup.missing_pieces()
    if not problems:
        try:
            return tcsetup.describe(), []
        except Exception as exc:  # noqa: BLE001 - a piece that is there but does not load is the finding
            problems = [(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]]
    if not required:
        return "not installed (optional: pip install 'cavnet[torchcodec]'): " + "; ".join(problems), []
    return "", problems


def locked_versions(lock: Path) -> dict[str, str]:
    """{distribution name: version} of the lock's lines whose environment marker holds here."""
    from packaging.markers import Marker

    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "==" not in line:
            continue
        spec, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = spec.partition("==")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def lock_mismatches(lock: Path) -> list[str]:
    """One line per locked package that is missing or at another version in this environment."""
    problems = []
    for name, want in sorted(locked_versions(lock).items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed, the lock pins {want}")
            continue
        if have != want:
            problems.append(f"{name}: installed {have}, the lock pins {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, help="requirements.lock to compare installed versions with")
    args = parser.parse_args(argv)
    print(f"cavnet install check: Python {platform.python_version()} on {platform.machine()}", flush=True)
    failed = 0
    for name, check in CHECKS.items():
        try:
            print(f"  {name:<22} {check()}", flush=True)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"check_install: {name} does not load: {type(exc).__name__}: {first[:300]}", file=sys.stderr)
            failed += 1
    required = args.lock is not None and "torchcodec" in locked_versions(args.lock)
    line, missing = torchcodec_problems(required)
    if line:
        print(f"  {'torchcodec':<22} {line}", flush=True)
    for piece in missing:
        print(f"check_install: torchcodec extra: {piece}", file=sys.stderr)
    failed += len(missing)
    if args.lock is not None:
        problems = lock_mismatches(args.lock)
        for line in problems:
            print(f"check_install: {line} (reinstall with `make clean install`)", file=sys.stderr)
        failed += len(problems)
        if not problems:
            print(f"  all {len(locked_versions(args.lock))} packages of {args.lock} at their locked versions")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
