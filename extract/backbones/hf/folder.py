"""Reading a Hugging Face model folder: what ``save_pretrained`` writes and a Hub snapshot holds.

``config.json`` (its ``model_type`` must be the family's), ``model.safetensors`` (or its shards with
``model.safetensors.index.json``), the processor's ``preprocessor_config.json`` (or ``processor_config.json``)
and, for a text tower, the tokenizer files. Weights load with transformers' own ``from_pretrained`` (its
key renames for older releases included); a key the model needs and the folder lacks, or one of another
shape, is refused in one line naming it, never initialised at random in silence.

Without a folder, a registered release is looked up in the Hugging Face cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) without network; when it is not there the error says which model id to put
where. Random weights only when the caller allows them (``--random-init``, the bench).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from torch import nn

from cavnet.errors import CavnetError
from cavnet.extract.backbones import BackboneSpec
from cavnet.extract.backbones.checkpoint_file import WeightsError, file_sha256, one_line
from cavnet.extract.backbones.hf.family import Family, transformers_class
from cavnet.extract.config import EncoderConfig, ExtractConfig

PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_SHOW = 3


def folder_json(folder: Path, what: str) -> dict[str, Any]:
    """``folder/config.json`` as a dict; one-line errors for a folder that is not a model folder."""
    if not folder.is_dir():
        raise WeightsError(f"{what} {folder}: not a folder (a Hugging Face model folder holds config.json, "
                           "model.safetensors and preprocessor_config.json)")
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(f"{what} {folder}: no config.json (not a Hugging Face model folder)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise WeightsError(f"{what} {path}: not JSON ({one_line(exc)})") from None


def weight_files(folder: Path, what: str) -> list[Path]:
    """``model.safetensors``, or the index and its shards in order."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise WeightsError(f"{what} {folder}: shard {missing[0]} of model.safetensors.index.json is missing")
        return [index] + [folder / s for s in shards]
    bin_only = " (only pytorch_model.bin: cavnet reads safetensors)" if (folder / "pytorch_model.bin").exists() else ""
    raise WeightsError(f"{what} {folder}: no model.safetensors{bin_only}")


def folder_sha256(folder: Path, what: str = "weights") -> str:
    """sha256 of ``model.safetensors``; of a sharded checkpoint, of its index followed by every shard."""
    files = weight_files(folder, what)
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def model_id(folder: Path, config: dict[str, Any]) -> str:
    """The Hub id of a snapshot in the cache (``org/name@revision``) or the one ``config.json`` names; ""."""
    parts = folder.resolve().parts
    for i, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/") + "@" + parts[i + 2][:12]
    name = str(config.get("_name_or_path", ""))
    return name if re.fullmatch(r"[\w.-]+/[\w.-]+", name) else ""


def check_family(family: Family, config: dict[str, Any], folder: Path, what: str, name: str) -> None:
    """Refuse a folder of another architecture than ``family``'s."""
    found = config.get("model_type")
    if found not in family.model_types:
        arch = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise WeightsError(f"{what} {folder} is a {found!r} checkpoint ({arch}); {name} needs a {family.name} one "
                           f"(model_type {' or '.join(family.model_types)})")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_snapshot(repo: str) -> Path | None:
    """The cached snapshot of ``repo``, looked up without network; None when it is not cached."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, a half-written cache, ...: not there
        return None


def resolve_folder(spec: BackboneSpec, given: str | Path | None, option: str, random_ok: bool) -> Path | None:
    """The folder for ``spec``: ``given``, else its release in the Hugging Face cache, else None when random
    weights are allowed; else one line naming the model id and where to put it."""
    if given is not None:
        return Path(given)
    repo = spec.hf.model_id
    if not repo:
        raise CavnetError(f"{spec.name} takes its size from a folder: pass {option} DIR")
    found = hub_snapshot(repo)
    if found is not None or random_ok:
        return found
    raise CavnetError(f"{spec.name}: no weights on this machine: {repo} is not in the Hugging Face cache "
                      f"({hub_cache_dir()}); on a machine with internet run `hf download {repo} --local-dir DIR`, "
                      f"copy DIR here and pass {option} DIR (or --random-init for random weights)")


def load_config(family: Family, folder: Path, what: str) -> Any:
    """The transformers config of the part of the folder's model ``family`` runs."""
    auto = transformers_class("AutoConfig")
    try:
        return family.sub_config(auto.from_pretrained(str(folder), local_files_only=True))
    except Exception as exc:
        raise WeightsError(f"{what} {folder}: cannot read config.json ({one_line(exc)})") from None


def load_processor(family: Family, folder: Path, what: str) -> Any:
    """The folder's ``family.processor``; refused when the folder has no processor file."""
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise WeightsError(f"{what} {folder}: no preprocessor_config.json (the {family.processor} settings the "
                           f"model was trained with): copy it from the release, or write it with "
                           f"{family.processor}.save_pretrained")
    try:
        return transformers_class(family.processor).from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise WeightsError(f"{what} {folder}: cannot read its {family.processor} settings ({one_line(exc)})") from None


def load_pretrained(cls_name: str, folder: Path, config: Any, what: str, missing_ok: tuple[str, ...] = ()
                    ) -> nn.Module:
    """``transformers.<cls_name>.from_pretrained(folder, config=config)`` in eval mode, refusing missing and
    misshaped keys (keys of other parts of the checkpoint, a text tower or a classifier, are not used)."""
    weight_files(folder, what)
    cls = transformers_class(cls_name)
    try:
        net, info = cls.from_pretrained(str(folder), config=config, local_files_only=True, output_loading_info=True,
                                        ignore_mismatched_sizes=True)
    except Exception as exc:
        raise WeightsError(f"{what} {folder}: cannot load it as {cls_name} ({one_line(exc)})") from None
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(missing_ok))
    shapes = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    problems = [f"{len(v)} {kind} ({_first(v)})" for kind, v in (("missing keys", missing),
                                                                  ("shape mismatches", shapes)) if v]
    if problems:
        raise WeightsError(f"{what} {folder} does not fit {cls_name}: {'; '.join(problems)}")
    return net.eval()


def load_backbone(family: Family, folder: Path, encoder: EncoderConfig, what: str) -> nn.Module:
    """cavnet's backbone of ``family`` with the folder's weights (its size from the folder's config)."""
    config = load_config(family, folder, what)
    return family.wrap(load_pretrained(family.hf_class, folder, config, what, family.missing_ok), encoder)


def hf_weight_fields(spec: BackboneSpec, given: str | Path | None, option: str, random_ok: bool
                     ) -> tuple[str | None, str | None, str | None]:
    """``(folder, sha256, what it is)`` for the store config, the folder checked first (its architecture,
    its processor file, every key the model needs); all None for random weights."""
    folder = resolve_folder(spec, given, option, random_ok)
    if folder is None:
        return None, None, None
    what, family = f"{spec.modality} weights", spec.hf.family
    config = folder_json(folder, what)
    check_family(family, config, folder, what, spec.name)
    load_processor(family, folder, what)
    load_backbone(family, folder, EncoderConfig(), what)  # a folder that does not fit stops here, not in a worker
    repo = model_id(folder, config)
    return str(folder.resolve()), folder_sha256(folder, what), f"hf {repo}" if repo else f"folder {folder.name}"


def hf_backbone(spec: BackboneSpec, config: ExtractConfig, modality: str, weights: bool = True) -> nn.Module:
    """The backbone ``config`` names for ``modality``: from its folder (``weights=False``: the folder's
    architecture, random weights, to load a fine-tuned state into), or the registered size at random (the
    caller seeds the RNG)."""
    family, folder = spec.hf.family, config.visual_weights if modality == "visual" else config.audio_weights
    if folder is None:
        return family.build(family.default_config(dict(spec.hf.facts)), config.encoder)
    what = f"{modality} weights"
    if not weights:
        return family.build(load_config(family, Path(folder), what), config.encoder)
    return load_backbone(family, Path(folder), config.encoder, what)


def _text_folder(model: str) -> tuple[str, Path, str]:
    """(kind, folder, what) of ``clip:LOCATION`` / ``clap:LOCATION`` (a folder, or a Hub id in the cache),
    the folder's ``config.json`` checked to be that tower's."""
    from cavnet.extract.backbones.hf.text import TEXT_TOWERS

    kind, location = model.split(":", 1)
    folder = Path(location).expanduser()
    if not folder.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", location):
        folder = hub_snapshot(location) or folder
    what = f"text model {model}"
    config = folder_json(folder, what)
    types = TEXT_TOWERS[kind][1]
    if config.get("model_type") not in types:
        raise WeightsError(f"{what}: {folder} is a {config.get('model_type')!r} checkpoint; {kind}: needs "
                           f"model_type {' or '.join(types)}")
    return kind, folder, what


def check_text_folder(model: str) -> str:
    """``model`` (``clip:LOCATION``) checked and written with the folder's absolute path."""
    kind, folder, _ = _text_folder(model)
    return f"{kind}:{folder.resolve()}"


def load_text_tower(model: str, device: str = "cpu", batch_size: int = 64) -> tuple[Any, Path, str]:
    """``clip:LOCATION`` / ``clap:LOCATION`` -> (encoder, folder, sha256 of its safetensors)."""
    from cavnet.extract.backbones.hf.text import TEXT_TOWERS, TextTower, TowerEncoder, max_tokens, text_sub_config

    kind, folder, what = _text_folder(model)
    cls_name = TEXT_TOWERS[kind][0]
    auto = transformers_class("AutoConfig")
    try:
        tower_config = text_sub_config(kind, auto.from_pretrained(str(folder), local_files_only=True))
        tokenizer = transformers_class("AutoTokenizer").from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise WeightsError(f"{what}: cannot read its config or tokenizer ({one_line(exc)})") from None
    net = load_pretrained(cls_name, folder, tower_config, what).to(device)
    encoder = TowerEncoder(TextTower(net), tokenizer, max_tokens(kind, tower_config), device, batch_size)
    return encoder, folder.resolve(), folder_sha256(folder, what)


def _first(items: list[str]) -> str:
    more = f", ... {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more
