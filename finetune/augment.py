"""Training-time augmentation of decoded clips and audio (pure functions: arrays in, arrays out).

Visual: each clip is decoded ``jitter_frames`` frames longer than the model's ``T`` and a random window of
``T`` consecutive frames is kept (random temporal jitter of the clip position, at most ``jitter_frames``
frames later than the window start); frames are decoded as a square of side ``round(size * crop_side)``
(the centre square of the frame at that short side), from which a random resized crop (torchvision
``RandomResizedCrop`` rule: area fraction ``crop_scale``, aspect ratio ``crop_ratio``, one box per clip) is
taken and resized to ``size``; the whole video is mirrored with probability ``flip``.
Audio: the log-mel examples move by a uniform shift of at most ``audio_shift`` seconds, and the waveform is
scaled by a uniform gain of at most ``gain_db`` decibels either way.

Evaluation uses none of this: it decodes exactly as extraction does.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from cavnet.extract.config import ClipSampling
from cavnet.finetune.config import AugmentConfig


def train_sampling(sampling: ClipSampling, aug: AugmentConfig) -> ClipSampling:
    """The sampling to decode a training video with: ``jitter_frames`` more frames per clip and frames
    kept as the whole centre square at the larger side ``max(short_side, round(size * crop_side))``."""
    side = max(sampling.short_side, int(round(sampling.size * aug.crop_side)))
    resize = sampling.resize
    if resize is not None:  # an exact (H, W) resize: scaled so that its short side is `side`
        scale = side / min(resize)
        resize = (max(side, round(resize[0] * scale)), max(side, round(resize[1] * scale)))
    return dataclasses.replace(sampling, frames=sampling.frames + aug.jitter_frames, short_side=side, size=side,
                               resize=resize)


def crop_box(side: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random crop of a ``side`` x ``side`` square covering a uniform
    ``scale`` fraction of its area with a log-uniform aspect ``ratio``; the whole square after 10 misses."""
    area = side * side
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= side and 0 < h <= side:
            return int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1)), h, w
    return 0, 0, side, side


def augment_clips(clips: np.ndarray, frames: int, size: int, aug: AugmentConfig,
                  rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """``(k, T + J, S', S', 3)`` uint8 decoded clips -> ``(k, T, size, size, 3)`` uint8 and the ``(k,)``
    frame offsets chosen (how far into each decoded window the kept ``T`` frames start)."""
    k, have = clips.shape[0], clips.shape[1]
    offsets = rng.integers(0, max(have - frames, 0) + 1, size=k)
    flip = rng.uniform() < aug.flip
    x = torch.from_numpy(np.ascontiguousarray(clips))
    out = torch.empty((k, frames, size, size, 3), dtype=torch.uint8)
    for i in range(k):
        window = x[i, offsets[i]:offsets[i] + frames]  # (T, S', S', 3)
        top, left, h, w = crop_box(window.shape[1], aug.crop_scale, aug.crop_ratio, rng)
        patch = window[:, top:top + h, left:left + w].permute(0, 3, 1, 2).float()  # (T, 3, h, w)
        if (h, w) != (size, size):
            patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True)
        if flip:
            patch = patch.flip(-1)
        out[i] = patch.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out, offsets


def clip_centres(decoded_centres: np.ndarray, offsets: np.ndarray, decoded_frames: int, frames: int,
                 fps: float) -> np.ndarray:
    """``(k,)`` centre times (s) of the kept windows, from the centres of the decoded ``decoded_frames``-long
    windows and the ``offsets`` chosen by :func:`augment_clips`."""
    shift = (offsets + frames / 2.0 - decoded_frames / 2.0) / max(fps, 1e-6)
    return np.asarray(decoded_centres, dtype=np.float64)[: len(offsets)] + shift


def augment_audio(wave: np.ndarray | None, centres: np.ndarray, aug: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray]:
    """Random gain of the ``(samples,)`` waveform and one random shift (s) of every example centre."""
    shift = rng.uniform(-aug.audio_shift, aug.audio_shift) if aug.audio_shift > 0 else 0.0
    gain = 10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db) / 20.0) if aug.gain_db > 0 else 1.0
    if wave is not None:
        wave = (wave * np.float32(gain)).astype(np.float32, copy=False)
    return wave, np.clip(np.asarray(centres, dtype=np.float64) + shift, 0.0, None)
