"""Build the manifest and the extraction config a command asked for (shared by extract, finetune, probe)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cavnet.errors import CavnetError
from cavnet.extract.config import AudioSampling, EncoderConfig, ExtractConfig
from cavnet.extract.manifest import Manifest

SYNTH_DEFAULT = Path.home() / ".cache" / "cavnet" / "av-synth"


def load_manifest(dataset: str, root: Path | None = None, manifest: Path | None = None,
                  splits: tuple[str, ...] | None = None, limit: int | None = None,
                  synth_videos: int = 200, synth_classes: int = 8, seed: int = 0) -> Manifest:
    """The manifest of ``dataset`` (k400 | csv | synth), restricted to ``splits`` and ``limit``."""
    from cavnet.extract.datasets import read_csv_manifest, read_k400

    if dataset == "k400":
        if root is None:
            raise CavnetError("--dataset k400 needs --root")
        m = read_k400(root)
    elif dataset == "csv":
        if manifest is None:
            raise CavnetError("--dataset csv needs --manifest F.csv")
        m = read_csv_manifest(manifest, root)
    elif dataset == "synth":
        root = root or SYNTH_DEFAULT
        if not (root / "train.csv").exists():
            from cavnet.extract.synth import synth

            synth(root, videos=synth_videos, classes=synth_classes, seed=seed)
        m = read_k400(root)
    else:
        raise CavnetError(f"unknown dataset {dataset!r}; use k400, csv or synth")
    selected = m.select(splits, limit)
    if len(selected) == 0:
        raise CavnetError(f"no videos in split(s) {','.join(splits or ())} of this {dataset} corpus")
    return selected


def extract_config(visual: str, audio: str, visual_weights: Path | None, audio_weights: Path | None,
                   text_model: str, prompt: str, clips: int, segments: int, precision: str = "fp32",
                   random_ok: bool = False, encoder: EncoderConfig | None = None) -> ExtractConfig:
    """An ExtractConfig with the clips and audio front end the backbones expect and the weights' hashes
    (torchvision's cached release when no file is given; ``random_ok``: random weights when it is missing).
    A Hugging Face encoder takes its preprocessing from its folder and is recorded under the name of the
    size the folder really is (``encoder``: its options)."""
    from cavnet.extract.backbones import get_spec
    from cavnet.extract.backbones.pretrained import weight_fields

    try:
        vspec, aspec = get_spec(visual), get_spec(audio)
    except KeyError as exc:
        raise CavnetError(str(exc.args[0])) from None
    if vspec.modality != "visual" or aspec.modality != "audio":
        raise CavnetError(f"--visual {visual} must be a visual backbone and --audio {audio} an audio one")
    if "{label}" not in prompt:
        raise CavnetError("--prompt must contain {label}")
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
        precision=precision, **fields)
