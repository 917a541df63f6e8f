"""Reading a checkpoint file safely: ``torch.load(weights_only=True)`` with exactly the numpy pieces the
released audio checkpoints need, one-line errors, and the file's sha256.

The released files pickle numpy objects: torchvggish's ``vggish_pca_params-970ea276.pth`` holds float64 arrays,
PANNs' ``Cnn14_mAP=0.431.pth`` an int64 sampler state. ``weights_only=True`` refuses every global that is not
allow-listed, so the loader allow-lists what rebuilding such arrays takes (the array reconstructor under its
numpy 1 and numpy 2 module names, ``ndarray``, ``dtype``, the float64 and int64 dtype classes and the scalar
constructor) and nothing else. Anything beyond that is refused, naming the object, unless the caller passes
``trust=True``: there is no silent fallback to unrestricted unpickling.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cavnet.errors import CavnetError


class WeightsError(CavnetError):
    """A checkpoint that cannot be loaded into the backbone; the message is one line naming the file."""


def _numpy_allow_list() -> list[Any]:
    """The globals that unpickling float64 / int64 numpy arrays and scalars takes, under the module names that
    numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) write."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # type: ignore[attr-defined]
    allowed: list[Any] = [np.ndarray, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.int64))]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(core._reconstruct, f"{module}._reconstruct"), (core.scalar, f"{module}.scalar")]
    return allowed


NUMPY_ALLOW_LIST = _numpy_allow_list()


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_bytes`` pieces (weight files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: Path, what: str, trust: bool = False) -> Any:
    """``torch.load`` of ``path`` on the CPU, restricted to tensors, containers and the numpy allow-list;
    ``trust=True`` allows any pickled object. ``what`` starts every error message."""
    if not path.is_file():
        raise WeightsError(f"{what}: no such file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{what}: empty file")
    try:
        with torch.serialization.safe_globals(NUMPY_ALLOW_LIST):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e)) or re.search(
            r"but got <class '([^']+)'>", str(e))
        if found is None:  # not a pickle torch understands at all
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
            reason = detail.group(1).strip() if detail else one_line(e)
            raise WeightsError(f"{what}: cannot read checkpoint (not a torch file: {reason})") from None
        if not trust:
            raise WeightsError(f"{what}: not a plain checkpoint (it pickles the Python object "
                               f"{found.group(1)}); load it with trust=True only if you trust its source"
                               ) from None
    except Exception as e:  # truncated, not a torch file, ...
        raise WeightsError(f"{what}: cannot read checkpoint ({one_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise WeightsError(f"{what}: cannot read checkpoint ({one_line(e)})") from None


def one_line(e: BaseException) -> str:
    """``Type: first sentence of the message``, on one line, at most about 160 characters."""
    text = " ".join(str(e).split()).split(". ")[0]
    text = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
