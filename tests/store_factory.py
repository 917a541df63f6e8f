"""Write small feature stores without decoding anything: features made from a class table.

Each class is a (visual pattern, sound pattern) pair, every pattern shared by two classes (as in
AV-Synth), so a test can check that fusion beats either modality alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cavnet.extract.config import AudioSampling, ClipSampling, ExtractConfig
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.store.writer import StoreDims, TextTables, VideoFeatures, consolidate, write_shard


def make_store(path: Path, videos: int = 96, classes: int = 4, dims: StoreDims = StoreDims(4, 4, 32, 16),
               text_dim: int = 24, seed: int = 0, noise: float = 0.5, no_audio_every: int = 0,
               broken_every: int = 0, splits: tuple[str, ...] = ("train", "train", "val"),
               shard_size: int = 32, captions: bool = False, labelled: bool = True,
               strings: bool = True, id_prefix: str = "vid", text_model: str = "test-text-model",
               class_names: tuple[str, ...] | None = None) -> Manifest:
    """A consolidated store of ``videos`` rows; returns its manifest. ``captions``: each video's own text
    is its own (its class prompt's embedding plus noise), as for a caption corpus; ``labelled=False``
    writes label -1 everywhere; ``strings=False`` writes a store from before stored texts (no text/string);
    ``id_prefix`` starts every video id (another prefix: a corpus of other videos); ``text_model``: the
    sentence encoder fingerprint the store records; ``class_names``: the class table (default ``class k``)."""
    rng = np.random.default_rng(seed)
    pairs = [(c // 2, ((c // 2) + c % 2) % (classes // 2)) for c in range(classes)]
    vproto = rng.normal(size=(classes // 2, dims.visual_dim)).astype(np.float32)
    aproto = rng.normal(size=(classes // 2, dims.audio_dim)).astype(np.float32)
    rows, feats = [], []
    for i in range(videos):
        label, split = i % classes, splits[i % len(splits)]
        vp, ap = pairs[label]
        # how many clips and segments a video has must not tell its class (a time-aware model would read it)
        nv = 1 + (i // classes) % dims.clips
        na = 0 if no_audio_every and i % no_audio_every == 0 else 1 + (i // classes) % dims.segments
        status = "no_audio" if na == 0 else "ok"
        if broken_every and i % broken_every == broken_every - 1:
            status, nv, na = "decode_error", 0, 0
        text = f"video {i} of class {label}" if captions else f"class {label}"
        rows.append(ManifestRow(f"{id_prefix}{i:05d}", f"/data/{split}/{id_prefix}{i:05d}.mp4",
                                label if labelled else -1, text,
                                split))
        visual = vproto[vp] + noise * rng.normal(size=(nv, dims.visual_dim)).astype(np.float32)
        audio = aproto[ap] + noise * rng.normal(size=(na, dims.audio_dim)).astype(np.float32)
        feats.append(VideoFeatures(status, "", 5.0, 25.0, visual, audio))
    manifest = Manifest(tuple(rows), tuple(class_names or (f"class {c}" for c in range(classes))))
    config = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny",
                           sampling=ClipSampling(clips=dims.clips), audio_sampling=AudioSampling(dims.segments))
    shard_dir = path.parent / (path.name + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for k, start in enumerate(range(0, videos, shard_size)):
        shards.append(shard_dir / f"shard-{k:05d}.h5")
        write_shard(shards[-1], start, rows[start:start + shard_size], feats[start:start + shard_size], dims,
                    config.to_json())
    class_emb = rng.normal(size=(classes, text_dim)).astype(np.float32)
    class_emb /= np.linalg.norm(class_emb, axis=1, keepdims=True)
    video_text = class_emb[[i % classes for i in range(videos)]]
    if captions:
        video_text = video_text + 0.5 * rng.normal(size=video_text.shape).astype(np.float32)
        video_text /= np.linalg.norm(video_text, axis=1, keepdims=True)
    prompts = [f"a video of {c}" for c in manifest.classes]
    # the strings embedded: each video's caption (``captions``), else its class prompt
    own = [f"video {i} of class {i % classes}" if captions else prompts[i % classes] if labelled else ""
           for i in range(videos)]
    texts = TextTables([r for r in manifest.classes], prompts, class_emb, video_text, text_model,
                       own if strings else None)
    consolidate(path, shards, manifest, dims, texts, config.to_json(), "test")
    return manifest
