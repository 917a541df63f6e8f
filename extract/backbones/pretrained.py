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

The store config records each file's path, sha256 and what it is (:func:`weights_name`);
:func:`extract_config` builds the whole store config of a chosen pair of backbones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cavnet.errors import CavnetError
from cavnet.extract.backbones import BackboneSpec, get_spec
from cavnet.extract.backbones.checkpoint_file import file_sha256
from cavnet.extract.backbones.weights import check_weights
from cavnet.extract.config import AudioSampling, EncoderConfig, ExtractConfig, SpatialViews, check_template


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


def extract_config(visual: str, audio: str, visual_weights: Path | None, audio_weights: Path | None,
                   text_model: str, prompt: str, clips: int, segments: int, precision: str = "fp32",
                   random_ok: bool = False, decoder: str = "pyav", encoder: EncoderConfig | None = None,
                   views: SpatialViews | None = None) -> ExtractConfig:
    """An ExtractConfig with the clips and audio front end the backbones expect and the weights' hashes
    (torchvision's cached release when no file is given; ``random_ok``: random weights when it is missing).
    ``decoder`` torchcodec is refused here, naming each missing piece, when it cannot be loaded. A Hugging
    Face encoder takes its preprocessing from its folder and is recorded under the name of the size the
    folder really is (``encoder``: its options). ``views``: the spatial views of each clip (None: the centre
    crop)."""
    if decoder == "torchcodec":
        from cavnet.extract.media import tcsetup

        tcsetup.load()
    try:
        vspec, aspec = get_spec(visual), get_spec(audio)
    except KeyError as exc:
        raise CavnetError(str(exc.args[0])) from None
    if vspec.modality != "visual" or aspec.modality != "audio":
        raise CavnetError(f"--visual {visual} must be a visual backbone and --audio {audio} an audio one")
    check_template("--prompt", prompt)
    from cavnet.extract.backbones.hf.text import tower_kind

    if tower_kind(text_model):  # CLIP's / CLAP's text tower: checked now, recorded with an absolute path
        from cavnet.extract.backbones.hf.folder import check_text_folder

        text_model = check_text_folder(text_model)
    vpath, vsha, vname = weight_fields(vspec, visual_weights, "--visual-weights", random_ok)
    apath, asha, aname = weight_fields(aspec, audio_weights, "--audio-weights", random_ok)
    fields = {"visual": visual, "audio": audio, "encoder": encoder or EncoderConfig(), "logmel": aspec.logmel,
              "sampling": dataclasses.replace(vspec.sampling, clips=clips) if vspec.hf is None else None}
    if vspec.hf is not None or aspec.hf is not None:
        from cavnet.extract.backbones.hf.fields import encoder_fields

        fields.update(encoder_fields(vspec, vpath, aspec, apath, clips, fields["encoder"]))
    return ExtractConfig(
        visual_weights=vpath, audio_weights=apath, visual_weights_sha256=vsha,
        audio_weights_sha256=asha, visual_weights_name=vname, audio_weights_name=aname,
        audio_sampling=AudioSampling(segments=segments), text_model=text_model, prompt_template=prompt,
        precision=precision, decoder=decoder, views=views or SpatialViews(), **fields)
