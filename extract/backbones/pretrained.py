"""Where a backbone's weights come from: a file the user names, torch.hub's cache, or nowhere.

- A file given with ``--visual-weights`` / ``--audio-weights`` is used as it is.
- torchvision's video models (``Release.hub_cache``) otherwise take their release from torch.hub's
  checkpoint folder (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), where
  ``torchvision.models.video.<arch>(weights=...)`` downloads it on a machine with internet. When it is not
  there, the error says which file to put where; random weights for these models only where the caller
  allows them (``cavnet bench``, which measures speed).
- Every other backbone without a file is randomly initialised (the 3D-ResNeXt family, whose release has no
  fixed URL, and the audio networks); :mod:`cavnet.extract.provenance` makes that loud downstream.
- The Hugging Face encoders (CLIP, VideoMAE, AST, CLAP) take a model folder, else their release from the
  Hugging Face cache, else stop naming the model id (:mod:`cavnet.extract.backbones.hf.folder`).

The store config records each file's path, sha256 and what it is (:func:`weights_name`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from cavnet.errors import CavnetError
from cavnet.extract.backbones import BackboneSpec
from cavnet.extract.backbones.checkpoint_file import file_sha256
from cavnet.extract.backbones.weights import check_weights


def hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder, where torchvision keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(spec: BackboneSpec, given: str | Path | None, option: str, random_ok: bool = False
                    ) -> Path | None:
    """The weight file for ``spec``: ``given``, else the cached torchvision release, else None (random).

    Raises :class:`CavnetError` (one line: which file, which folder, which option) for a torchvision model
    whose release is not cached, unless ``random_ok``.
    """
    if given is not None:
        return Path(given)
    release = spec.release
    if release is None or not release.hub_cache:
        return None
    cached = hub_checkpoint_dir() / release.file
    if cached.is_file():
        return cached
    if random_ok:
        return None
    raise CavnetError(f"{spec.name}: no weights on this machine: put {release.file} (from {release.url}) into "
                      f"{cached.parent}/ (torch.hub's cache, TORCH_HOME) or pass {option} FILE")


def weights_name(spec: BackboneSpec, path: Path, sha256: str) -> str:
    """What the file is: the release's name when its sha256 starts with the release's hash prefix, else
    ``file NAME``; a companion file beside it (VGGish's PCA parameters) is named with its own sha256."""
    release = spec.release
    is_release = release is not None and release.sha256_prefix and sha256.startswith(release.sha256_prefix)
    name = release.name if is_release else f"file {path.name}"
    if release is not None and release.companion:
        other = path.parent / release.companion
        if other.is_file() and not is_release:
            name += f" + {release.companion}"
        if other.is_file():
            name += f" (PCA sha256 {file_sha256(other)[:16]})"
    return name


def weight_fields(spec: BackboneSpec, given: str | Path | None, option: str, random_ok: bool = False
                  ) -> tuple[str | None, str | None, str | None]:
    """``(path, sha256, name)`` of ``spec``'s weights for the store config, the file checked key by key
    against the model; all None for random weights."""
    if spec.hf is not None:
        from cavnet.extract.backbones.hf.folder import hf_weight_fields

        return hf_weight_fields(spec, given, option, random_ok)
    path = resolve_weights(spec, given, option, random_ok)
    if path is None:
        return None, None, None
    check_weights(spec.name, path, spec.modality)  # a file that does not fit stops here, not in a worker
    digest = file_sha256(path)
    return str(path), digest, weights_name(spec, path, digest)
