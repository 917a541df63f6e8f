"""Client-side text embedding: class prompts once, and each video's own text when it has one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.extract.files.inputs import read_text, text_lines as read_lines
from cavnet.extract.manifest import Manifest
from cavnet.extract.store.writer import TextTables
from cavnet.extract.text import TextEncoder


def class_prompts(classes: tuple[str, ...], template: str) -> list[str]:
    return [template.format(label=name.replace("_", " ")) for name in classes]


def embed_texts(manifest: Manifest, config: ExtractConfig, device: str = "cpu") -> TextTables:
    """Embeddings ``(C, Dt)`` of the class prompts and ``(N, Dt)`` of every video.

    A video's own text is embedded when it has one; otherwise it gets its class prompt's embedding,
    and a video with neither (unlabelled, no text) gets zeros.
    """
    encoder = TextEncoder(config.text_model, device="cpu" if device == "auto" else device)
    prompts = class_prompts(manifest.classes, config.prompt_template)
    class_emb = encoder.encode(prompts) if prompts else np.zeros((0, encoder.dim), np.float32)
    own = sorted({r.text for r in manifest.rows if r.text})
    own_emb = dict(zip(own, encoder.encode(own))) if own else {}
    video = np.zeros((len(manifest), encoder.dim), np.float32)
    for i, r in enumerate(manifest.rows):
        if r.text:
            video[i] = own_emb[r.text]
        elif r.label >= 0:
            video[i] = class_emb[r.label]
    return TextTables(list(manifest.classes), prompts, class_emb, video, encoder.fingerprint(),
                      video_strings(manifest, prompts))


def video_strings(manifest: Manifest, prompts: list[str]) -> list[str]:
    """The string each video's text embedding embeds: its own text, else its class prompt, else "" (the
    zero row of a video with neither)."""
    return [r.text or (prompts[r.label] if r.label >= 0 else "") for r in manifest.rows]


# ---- label-text sets (``cavnet text --add-set``; the store side is ``extract.store.text_sets``) ----------

def clip_kinetics_templates() -> tuple[str, ...]:
    """The 28 prompt templates CLIP used for Kinetics-700 (Radford et al. 2021, openai/CLIP data/prompts.md):
    "a photo / video / example / demonstration of" x "{label}", "a person {label}", "a person using /
    doing / during / performing / practicing {label}", each ending in a full stop."""
    forms = ("{label}", "a person {label}") + tuple(f"a person {verb} {{label}}" for verb in
                                                  ("using", "doing", "during", "performing", "practicing"))
    return tuple(f"a {noun} of {form}." for noun in ("photo", "video", "example", "demonstration") for form in forms)


# name -> (kind, templates) of the sets ``cavnet text --add-set NAME`` makes without a source option
BUILTIN_TEXT_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "name": ("name", ("{label}",)),
    "clip-kinetics": ("ensemble", clip_kinetics_templates()),
}


def template_texts(classes: tuple[str, ...] | list[str], templates: tuple[str, ...] | list[str]) -> list[list[str]]:
    """Each class's texts: every template with the class name (underscores as spaces) for ``{label}``."""
    for t in templates:
        if "{label}" not in t:
            raise CavnetError(f"template {t!r} has no {{label}}")
    return [[t.replace("{label}", c.replace("_", " ")) for t in templates] for c in classes]


def text_lines(path: Path, what: str) -> list[str]:
    """The lines of a text file, stripped, blank lines and ``#`` comments skipped; one line naming ``what``
    (e.g. "labels") when there is none."""
    lines = read_lines(path, f"--{what}")
    if not lines:
        raise CavnetError(f"{path}: no {what} (one per line)")
    return lines


def read_templates(path: Path) -> list[str]:
    """One template per line of ``path`` (blank lines and ``#`` comments skipped), each with ``{label}``."""
    return text_lines(path, "templates")


def read_descriptions(path: Path, classes: tuple[str, ...] | list[str]) -> list[list[str]]:
    """Per-class descriptions from a CSV ``class,description`` (a header row of those words is optional; a
    class may have several rows, whose embeddings are averaged). A class is named as in the store, with
    underscores and spaces alike. Every class needs one; an unknown class is refused, in one line."""
    import csv
    import io

    def key(name: str) -> str:  # "abseiling_rope" and "abseiling rope" are one class
        return " ".join(name.replace("_", " ").split())

    by_key = {key(c): c for c in classes}
    found: dict[str, list[str]] = {c: [] for c in classes}
    rows = csv.reader(io.StringIO(read_text(path, "--descriptions"), newline=""))
    for k, row in enumerate(rows, start=1):
        if not row or (k == 1 and [x.strip().lower() for x in row[:2]] == ["class", "description"]):
            continue
        if len(row) != 2 or not row[1].strip():
            raise CavnetError(f"{path}, line {k}: expected 'class,description', got {row!r}")
        name = row[0].strip()
        if key(name) not in by_key:
            raise CavnetError(f"{path}, line {k}: {name!r} is not a class of the store")
        found[by_key[key(name)]].append(row[1].strip())
    missing = [c for c, d in found.items() if not d]
    if missing:
        raise CavnetError(f"{path}: no description for {len(missing)} classes ({', '.join(missing[:3])}"
                          + (", ..." if len(missing) > 3 else "") + ")")
    return [found[c] for c in classes]


def embed_class_texts(encoder: TextEncoder, texts: list[list[str]]) -> np.ndarray:
    """(C, Dt) float32: for each class the mean of its texts' unit embeddings, normalised again (one text:
    its embedding), as CLIP's prompt ensembles average."""
    flat = [t for group in texts for t in group]
    emb = encoder.encode(flat)
    out = np.zeros((len(texts), encoder.dim), np.float32)
    start = 0
    for c, group in enumerate(texts):
        mean = emb[start:start + len(group)].mean(axis=0)
        out[c] = mean / np.linalg.norm(mean)
        start += len(group)
    return out
