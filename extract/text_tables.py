"""Client-side text embedding: class prompts once, and each video's own text when it has one."""

from __future__ import annotations

import numpy as np

from cavnet.extract.config import ExtractConfig
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
