"""Loading backbone weights from checkpoint files: the only place in ``extract/backbones`` that opens a file.

Accepted layouts (after ``torch.load``):

- the released 3D-ResNeXt Kinetics checkpoint ``{'epoch', 'arch': 'resnext-101', 'state_dict', 'optimizer'}``
  with keys prefixed ``module.`` (saved from ``nn.DataParallel``);
- a bare state dict, with or without the ``module.`` prefix;
- ``{'model': state_dict}`` (or ``{'state_dict': ...}`` alone).

Classifier keys ``fc.*`` are dropped when the model has none (features are taken before the classifier).
Checkpoints from before PyTorch 0.4.1 lack the batch-norm ``num_batches_tracked`` counters; those keep the
model's own value. Anything else that does not match is an error (:class:`WeightsError`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cavnet.errors import CavnetError

_CLASSIFIER_PREFIXES = ("fc.",)
_SHOW = 3  # keys named per kind in an error message


class WeightsError(CavnetError):
    """A checkpoint that cannot be loaded into the backbone; the message is one line naming the file."""


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_bytes`` pieces (weight files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, modality_hint: str | None = None,
                 trust: bool = False) -> str:
    """Load the checkpoint at ``path`` into ``model`` (in place) and return the file's sha256 hex digest.

    ``modality_hint`` ("visual" / "audio") only words the error messages ("visual weights ..."); a
    mismatch message also quotes the checkpoint's ``arch`` entry if it has one. ``trust=True`` allows
    unpickling arbitrary objects (``weights_only=False``): only for files from a source you trust.
    Raises :class:`WeightsError` for a missing, unreadable or mismatched file.
    """
    path = Path(path)
    what = f"{modality_hint} weights {path}" if modality_hint else f"weights {path}"
    if not path.is_file():
        raise WeightsError(f"{what}: no such file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{what}: empty file")
    obj = _torch_load(path, what, trust)
    state = _extract_state_dict(obj, what)
    if isinstance(obj, Mapping) and isinstance(obj.get("arch"), str):
        what += f" (arch {obj['arch']!r})"
    state = _strip_prefix(state, "module.")
    expected = model.state_dict()
    state = _drop_classifier(state, expected)
    _check_match(state, expected, what)
    for key, value in expected.items():  # pre-0.4.1 checkpoints have no BN counters: keep the model's
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    model.load_state_dict(state, strict=True)
    return file_sha256(path)


def _torch_load(path: Path, what: str, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:  # not a pickle torch understands at all
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
            reason = detail.group(1).strip() if detail else _one_line(e)
            raise WeightsError(f"{what}: cannot read checkpoint (not a torch file: {reason})") from None
        if not trust:
            raise WeightsError(f"{what}: not a plain checkpoint (it pickles the Python object "
                               f"{found.group(1)}); load it with trust=True only if you trust its source"
                               ) from None
    except Exception as e:  # truncated, not a torch file, ...
        raise WeightsError(f"{what}: cannot read checkpoint ({_one_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise WeightsError(f"{what}: cannot read checkpoint ({_one_line(e)})") from None


def _extract_state_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):  # a whole pickled model (only with trust=True)
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{what}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            inner = inner.state_dict()
        if isinstance(inner, Mapping):
            obj = inner
            break
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise WeightsError(f"{what}: no tensors found (keys: {', '.join(map(str, list(obj)[:_SHOW]))})")
    return state


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _drop_classifier(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
                     ) -> dict[str, torch.Tensor]:
    """Drop ``fc.*`` unless the model has such parameters itself (then they must match)."""
    drop = [p for p in _CLASSIFIER_PREFIXES if not any(k.startswith(p) for k in expected)]
    return {k: v for k, v in state.items() if not k.startswith(tuple(drop))} if drop else dict(state)


def _check_match(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str) -> None:
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({_first(shapes)})")
    if problems:
        raise WeightsError(f"{what} does not fit the model: {'; '.join(problems)}")


def _first(items: list[str]) -> str:
    more = f", ... {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _one_line(e: BaseException) -> str:
    """``Type: first sentence of the message``, on one line, at most about 160 characters."""
    text = " ".join(str(e).split()).split(". ")[0]
    text = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
