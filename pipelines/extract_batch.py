"""Decode one video into model inputs, and run the backbones over batches of clips from many videos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cavnet.extract.audio import segment_examples
from cavnet.extract.backbones import create_backbone
from cavnet.extract.backbones.weights import load_weights
from cavnet.extract.config import ExtractConfig
from cavnet.extract.decode import decode_video
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.store import VideoFeatures
from cavnet.errors import CavnetError


@dataclass
class DecodedItem:
    """Model inputs of one video: ``clips`` (n_valid, T, S, S, 3) uint8, ``examples`` (m_valid, 1, F, M)."""

    status: str
    error: str
    duration: float
    fps: float
    clips: np.ndarray
    examples: np.ndarray

    @classmethod
    def failed(cls, status: str, error: str) -> "DecodedItem":
        return cls(status, error, 0.0, 0.0, np.zeros((0,), np.uint8), np.zeros((0,), np.float32))


def decode_item(row: ManifestRow, config: ExtractConfig) -> DecodedItem:
    """Decode ``row``'s file and cut its log-mel examples; bad media gives a status, never an exception."""
    d = decode_video(row.path, config.sampling, config.logmel, config.audio_sampling.segments)
    if len(d.clips) == 0:
        return DecodedItem.failed(d.status, d.error)
    examples = segment_examples(d.audio, config.logmel, config.audio_sampling.segments, d.clip_times, d.duration)
    return DecodedItem(d.status, d.error, float(d.duration), float(d.fps), d.clips, examples)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CavnetError(f"--device {device}: no CUDA device is available here")
    return torch.device(device)


def build_backbones(config: ExtractConfig, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Both backbones in eval mode on ``device``, weights loaded and checked against the config hashes."""
    models = []
    for name, path, expected in ((config.visual, config.visual_weights, config.visual_weights_sha256),
                                 (config.audio, config.audio_weights, config.audio_weights_sha256)):
        model = create_backbone(name)
        if path:
            digest = load_weights(model, path)
            if expected and digest != expected:
                raise CavnetError(f"{path}: sha256 {digest[:12]} differs from the {expected[:12]} recorded in the store")
        models.append(model.to(device).eval())
    visual, audio = models
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        visual = visual.to(memory_format=torch.channels_last_3d)
    return visual, audio


class BatchEmbedder:
    """Collects decoded videos and runs the backbones on batches of about ``batch_clips`` clips."""

    def __init__(self, config: ExtractConfig, device: str, batch_clips: int) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.visual, self.audio = build_backbones(config, self.device)
        self.visual_dim, self.audio_dim = self.visual.out_dim, self.audio.out_dim
        self.batch_clips = max(1, batch_clips)
        s = config.sampling
        self._mean = torch.tensor(s.mean, device=self.device).view(1, 3, 1, 1, 1)
        self._std = torch.tensor(s.std, device=self.device).view(1, 3, 1, 1, 1)
        self._pending: list[tuple[int, DecodedItem]] = []

    def add(self, index: int, item: DecodedItem) -> list[tuple[int, VideoFeatures]]:
        self._pending.append((index, item))
        if sum(len(it.clips) for _, it in self._pending) >= self.batch_clips:
            return self.flush()
        return []

    def flush(self) -> list[tuple[int, VideoFeatures]]:
        pending, self._pending = self._pending, []
        if not pending:
            return []
        vis = self._run_visual([it.clips for _, it in pending])
        aud = self._run_audio([it.examples for _, it in pending])
        return [(i, VideoFeatures(it.status, it.error, it.duration, it.fps, v, a))
                for (i, it), v, a in zip(pending, vis, aud)]

    @torch.inference_mode()
    def _run_visual(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 clips (k_i, T, S, S, 3) per video -> features (k_i, Dv) per video."""
        counts = [len(c) for c in clips]
        full = [c for c in clips if len(c)]
        if not full:
            return [np.zeros((0, self.visual_dim), np.float32) for _ in clips]
        x = torch.from_numpy(np.concatenate(full))
        outs = []
        for chunk in x.split(self.batch_clips):
            if self.device.type == "cuda":
                chunk = chunk.pin_memory().to(self.device, non_blocking=True)
            chunk = chunk.to(self.device).permute(0, 4, 1, 2, 3).float().sub_(self._mean).div_(self._std)
            if self.device.type == "cuda":
                chunk = chunk.contiguous(memory_format=torch.channels_last_3d)
            outs.append(self.visual(chunk).float().cpu())
        return _split(torch.cat(outs).numpy(), counts, self.visual_dim)

    @torch.inference_mode()
    def _run_audio(self, examples: list[np.ndarray]) -> list[np.ndarray]:
        """log-mel examples (k_i, 1, F, M) per video -> features (k_i, Da) per video."""
        counts = [len(e) for e in examples]
        full = [e for e in examples if len(e)]
        if not full:
            return [np.zeros((0, self.audio_dim), np.float32) for _ in examples]
        x = torch.from_numpy(np.concatenate(full))
        outs = [self.audio(chunk.to(self.device)).float().cpu() for chunk in x.split(4 * self.batch_clips)]
        return _split(torch.cat(outs).numpy(), counts, self.audio_dim)


def _split(features: np.ndarray, counts: list[int], dim: int) -> list[np.ndarray]:
    """Cut ``(sum k_i, D)`` back into per-video ``(k_i, D)`` arrays."""
    out, at = [], 0
    for k in counts:
        out.append(features[at:at + k] if k else np.zeros((0, dim), np.float32))
        at += k
    return out
