"""Loading backbone weights from checkpoint files into a model, key by key.

Accepted layouts (after :func:`~cavnet.extract.backbones.checkpoint_file.read_checkpoint`):

- the released 3D-ResNeXt Kinetics checkpoint ``{'epoch', 'arch': 'resnext-101', 'state_dict', 'optimizer'}``
  with keys prefixed ``module.`` (saved from ``nn.DataParallel``);
- a bare state dict, with or without the ``module.`` prefix (torchvision's and torchvggish's releases);
- ``{'model': state_dict, ...}`` (PANNs' ``{'iteration', 'model', 'sampler'}``) or ``{'state_dict': ...}``.

What a model declares about its release (class or instance attributes, no file access in the model):

- ``classifier_prefixes`` (default ``("fc.",)``): the release's classifier, dropped when the model has no
  such keys (features are taken before the classifier);
- ``release_frontend``: ``{key: shape}`` of tensors the release carries for a front end cavnet computes
  itself (CNN14's STFT and mel matrices): their shapes are checked (a 16 kHz CNN14 is refused), then dropped;
- ``companion_file`` / ``companion_keys``: tensors that come from a second released file lying beside the
  first (VGGish's PCA parameters), read when the checkpoint itself lacks them.

Checkpoints from before PyTorch 0.4.1 lack the batch-norm ``num_batches_tracked`` counters; those keep the
model's own value. Any other missing, unexpected or misshaped key is an error (:class:`WeightsError`) that
names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cavnet.extract.backbones.checkpoint_file import WeightsError, file_sha256, read_checkpoint

__all__ = ["WeightsError", "check_weights", "file_sha256", "fitted_state", "load_weights"]

_SHOW = 3  # keys named per kind in an error message


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, modality_hint: str | None = None,
                 trust: bool = False) -> str:
    """Load the checkpoint at ``path`` into ``model`` (in place) and return the file's sha256 hex digest.

    ``modality_hint`` ("visual" / "audio") only words the error messages ("visual weights ..."); a
    mismatch message also quotes the checkpoint's ``arch`` entry if it has one. ``trust=True`` allows
    unpickling arbitrary objects (``weights_only=False``): only for files from a source you trust.
    Raises :class:`WeightsError` for a missing, unreadable or mismatched file; the model is then untouched.
    """
    model.load_state_dict(fitted_state(model, path, modality_hint=modality_hint, trust=trust), strict=True)
    return file_sha256(path)


def check_weights(name: str, path: str | os.PathLike[str], modality_hint: str | None = None) -> None:
    """Refuse early (:class:`WeightsError`) a file that does not fit backbone ``name``: the checkpoint is read
    and matched key by key against the model built on the meta device (no memory, no compute)."""
    from cavnet.extract.backbones import create_backbone

    with torch.device("meta"):
        model = create_backbone(name)
    fitted_state(model, path, modality_hint=modality_hint)


def fitted_state(model: nn.Module, path: str | os.PathLike[str], *, modality_hint: str | None = None,
                 trust: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` as ``model`` takes it (prefix stripped, classifier and front-end tensors
    dropped, companion tensors added), checked key by key; see :func:`load_weights`."""
    path = Path(path)
    what = f"{modality_hint} weights {path}" if modality_hint else f"weights {path}"
    obj = read_checkpoint(path, what, trust)
    state = _extract_state_dict(obj, what)
    if isinstance(obj, Mapping) and isinstance(obj.get("arch"), str):
        what += f" (arch {obj['arch']!r})"
    state = _strip_prefix(state, "module.")
    expected = model.state_dict()
    state = _drop_classifier(state, expected, tuple(getattr(model, "classifier_prefixes", ("fc.",))))
    state = _drop_frontend(state, getattr(model, "release_frontend", {}), what)
    state.update(_companion(model, state, path, trust))
    _check_match(state, expected, what)
    for key, value in expected.items():  # pre-0.4.1 checkpoints have no BN counters: keep the model's
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    return state


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


def _drop_classifier(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                     prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop the classifier keys unless the model has such parameters itself (then they must match)."""
    drop = tuple(p for p in prefixes if not any(k.startswith(p) for k in expected))
    return {k: v for k, v in state.items() if not k.startswith(drop)} if drop else dict(state)


def _drop_frontend(state: dict[str, torch.Tensor], frontend: Mapping[str, tuple[int, ...]], what: str
                   ) -> dict[str, torch.Tensor]:
    """Check the shapes of the release's front-end tensors, then drop them."""
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(shape)}" for k, shape in frontend.items()
             if k in state and tuple(state[k].shape) != tuple(shape)]
    if wrong:
        raise WeightsError(f"{what} was made for another front end: {len(wrong)} front-end tensor(s) of another "
                           f"shape ({_first(wrong)})")
    return {k: v for k, v in state.items() if k not in frontend}


def _companion(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, trust: bool
               ) -> dict[str, torch.Tensor]:
    """The tensors ``model.companion_keys`` from ``model.companion_file`` beside ``path``, when the checkpoint
    lacks them; each reshaped to the model's shape when the sizes agree ((128,) and (128, 1) alike)."""
    name, keys = getattr(model, "companion_file", None), tuple(getattr(model, "companion_keys", ()))
    if not name or all(k in state for k in keys):
        return {}
    other = path.parent / name
    if not other.is_file():
        raise WeightsError(f"weights {path}: {type(model).__name__} also needs {name} beside it: put that file "
                           f"in {path.parent}")
    obj = read_checkpoint(other, f"weights {other}", trust)
    expected = model.state_dict()
    out = {}
    for key in keys:
        value = obj.get(key) if isinstance(obj, Mapping) else None
        if value is None:
            raise WeightsError(f"weights {other}: no entry {key!r} (keys: {', '.join(map(str, obj))[:120]})")
        tensor = torch.as_tensor(np.asarray(value), dtype=expected[key].dtype)
        if tensor.numel() != expected[key].numel():
            raise WeightsError(f"weights {other}: {key} has shape {tuple(tensor.shape)}, the model "
                               f"{tuple(expected[key].shape)}")
        out[key] = tensor.reshape(expected[key].shape)
    return out


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
