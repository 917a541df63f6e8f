"""Decode one video into model inputs, and run the backbones over fixed-size batches of clips from many videos.

The embedder keeps the accelerator busy: clips and log-mel examples of consecutive videos are queued and cut
into full batches (a video's clips may span two batches), each batch is copied once into a pinned staging
buffer, sent with a non-blocking copy and run in the precision and layout measured fastest
(:mod:`cavnet.extract.runtime`); results come back asynchronously and a video is returned once all its
clips and examples are done. Two staging buffers per modality let the host fill one while the device reads
the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cavnet.errors import CavnetError
from cavnet.extract.media.frontends import audio_examples
from cavnet.extract.backbones import create_backbone, feature_dim, get_spec
from cavnet.extract.backbones.weights import load_weights
from cavnet.extract.clip_input import ClipNormalize
from cavnet.extract.config import ExtractConfig, SpatialViews
from cavnet.extract.device import resolve_device
from cavnet.extract.media.decode import decode_threads, decode_with
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.store.writer import VideoFeatures
from cavnet.extract.runtime import RunMode, forward, pick_mode


@dataclass
class DecodedItem:
    """Model inputs of one video: ``clips`` (n_valid * V, T, S, S, 3) uint8 (clip-major: the V spatial
    views of clip 0, then of clip 1 ...; V = ``views``, 1 unless asked for), ``examples`` (m_valid, 1, F, M)."""

    status: str
    error: str
    duration: float
    fps: float
    clips: np.ndarray
    examples: np.ndarray
    views: int = 1

    @classmethod
    def failed(cls, status: str, error: str) -> "DecodedItem":
        return cls(status, error, 0.0, 0.0, np.zeros((0,), np.uint8), np.zeros((0,), np.float32))


def decode_item(row: ManifestRow, config: ExtractConfig, threads: int | None = None,
                device: str = "cpu", views: bool = False) -> DecodedItem:
    """Decode ``row``'s file with ``config.decoder`` and cut its log-mel examples; bad media gives a status,
    never an exception. ``threads``: FFmpeg decoder threads (None: :func:`decode_threads`); ``device``
    "cuda": the torchcodec decoder may use NVDEC. ``views``: every spatial view of ``config.views`` (the
    extraction), else the centre crop only (fine-tuning, predict)."""
    threads = decode_threads() if threads is None else threads
    spec = config.views if views else SpatialViews()
    d = decode_with(config.decoder, row.path, config.sampling, config.logmel, config.audio_sampling.segments,
                    threads, device, spec.crops)
    if len(d.clips) == 0:
        return DecodedItem.failed(d.status, d.error)
    examples = audio_examples(d.audio, config, d.clip_times, d.duration)
    clips = view_clips(d.all_crops(), spec) if spec.count > 1 else d.clips
    return DecodedItem(d.status, d.error, float(d.duration), float(d.fps), clips, examples, spec.count)


def view_clips(crops: np.ndarray, spec: SpatialViews) -> np.ndarray:
    """``(n, K, T, S, S, 3)`` crops -> ``(n * V, T, S, S, 3)`` views, clip-major: the K crops of a clip, then
    (``spec.flip``) their horizontal flips."""
    views = np.concatenate([crops, crops[..., ::-1, :]], axis=1) if spec.flip else crops
    return np.ascontiguousarray(views).reshape(-1, *views.shape[2:])


BACKBONE_SEED = 0  # random initialisation when no weight file is given: the same in every process


def build_backbones(config: ExtractConfig, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Both backbones in eval mode on ``device``, weights loaded and checked against the config hashes.

    Without a weight file a backbone is initialised from ``BACKBONE_SEED``, so every worker process (and a
    later fine-tune) builds the same random network; the caller's RNG state is left as it was.
    """
    models = []
    for modality, path, expected in (("visual", config.visual_weights, config.visual_weights_sha256),
                                     ("audio", config.audio_weights, config.audio_weights_sha256)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BACKBONE_SEED)
            model = backbone_for(config, modality)
        if path:
            digest = _folder_digest(path) if get_spec(getattr(config, modality)).hf else load_weights(model, path)
            if expected and digest != expected:
                raise CavnetError(f"{path}: sha256 {digest[:12]} differs from the {expected[:12]} recorded in the "
                                  "store")
        models.append(model.to(device).eval())
    return models[0], models[1]


def backbone_for(config: ExtractConfig, modality: str, weights: bool = True) -> torch.nn.Module:
    """``config``'s ``modality`` backbone, randomly initialised (the caller seeds), or for a Hugging Face
    encoder with a folder the folder's model (``weights=False``: its architecture only)."""
    spec = get_spec(getattr(config, modality))
    if spec.hf is None:
        return create_backbone(spec.name)
    from cavnet.extract.backbones.hf.folder import hf_backbone

    model = hf_backbone(spec, config, modality, weights)
    model.out_dim = feature_dim(config, modality)
    return model.eval()


def _folder_digest(path: str) -> str:
    from cavnet.extract.backbones.hf.folder import folder_sha256

    return folder_sha256(Path(path))


class _Stream:
    """One backbone fed fixed-size batches of rows (clips or examples) queued from many videos.

    Two host slots, each a staging buffer ``(batch, *item)`` and a result buffer ``(batch, D)`` (pinned on
    CUDA), alternate: a slot is reused only after its batch is harvested, so the host fills one while the
    device works on the other. ``prepare`` turns a device batch into the model input.
    """

    def __init__(self, model: torch.nn.Module, mode: RunMode, batch: int, item: tuple[int, ...],
                 dtype: torch.dtype, device: torch.device, prepare: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.model, self.mode, self.batch, self.device, self.prepare = model, mode, batch, device, prepare
        pin = device.type == "cuda"
        dim = int(model.out_dim)
        self.slots = [(torch.empty((batch, *item), dtype=dtype, pin_memory=pin),
                       torch.empty((batch, dim), dtype=torch.float32, pin_memory=pin)) for _ in range(2)]
        self.turn = 0
        self.queue: list[tuple[int, int, np.ndarray]] = []  # (video index, next row to send, rows)
        self.queued = 0
        self.inflight: list[tuple[torch.cuda.Event | None, torch.Tensor, list[tuple[int, int, int, int]]]] = []
        self.ready: list[tuple[int, int, int, np.ndarray]] = []

    def push(self, index: int, rows: np.ndarray) -> None:
        if len(rows):
            self.queue.append((index, 0, rows))
            self.queued += len(rows)

    def launch(self, final: bool) -> None:
        """Run every full batch queued (and the remainder when ``final``)."""
        while self.queued >= self.batch or (final and self.queued):
            self._launch_one(min(self.batch, self.queued))

    def _launch_one(self, n: int) -> None:
        self._harvest(block=True, keep=len(self.slots) - 1)  # frees the slot used two batches ago
        rows, out = self.slots[self.turn]
        self.turn = (self.turn + 1) % len(self.slots)
        staged, pieces, at = rows.numpy(), [], 0
        while at < n:
            index, first, data = self.queue[0]
            take = min(len(data) - first, n - at)
            staged[at:at + take] = data[first:first + take]
            pieces.append((index, first, at, take))
            at += take
            if first + take == len(data):
                self.queue.pop(0)
            else:
                self.queue[0] = (index, first + take, data)
        self.queued -= n
        x = rows[:n].to(self.device, non_blocking=True)
        out[:n].copy_(forward(self.model, self.prepare(x), self.mode), non_blocking=True)
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        self.inflight.append((event, out[:n], pieces))

    def _harvest(self, block: bool, keep: int = 0) -> None:
        """Move finished batches (all but ``keep``, waiting for them when ``block``) to ``ready``."""
        while len(self.inflight) > keep:
            event, out, pieces = self.inflight[0]
            if event is not None:
                if not block and not event.query():
                    return
                event.synchronize()
            self.inflight.pop(0)
            host = out.numpy()
            self.ready += [(index, first, take, host[at:at + take].copy()) for index, first, at, take in pieces]

    def collect(self, block: bool) -> list[tuple[int, int, int, np.ndarray]]:
        """Finished results as (video index, first row, count, ``(count, D)`` features)."""
        self._harvest(block)
        done, self.ready = self.ready, []
        return done


@dataclass
class _Pending:
    item: DecodedItem
    visual: np.ndarray  # (k, Dv) float32, filled as batches come back
    audio: np.ndarray  # (m, Da)
    left: int  # rows not back yet


class BatchEmbedder:
    """Collects decoded videos and runs the backbones on batches of ``batch_clips`` clips (and of
    ``4 * batch_clips`` log-mel examples); returns each video's features once they are all back."""

    def __init__(self, config: ExtractConfig, device: str, batch_clips: int) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.visual, self.audio = build_backbones(config, self.device)
        self.visual_dim, self.audio_dim = self.visual.out_dim, self.audio.out_dim
        self.batch_clips = max(1, batch_clips)
        s, lm = config.sampling, config.logmel
        self._normalise = ClipNormalize(s).to(self.device)
        clip = (s.frames, s.size, s.size, 3)
        example = (1, lm.example_frames, lm.n_mels)
        self.modes = {"visual": self._pick(self.visual, config.visual, (3, s.frames, s.size, s.size)),
                      "audio": self._pick(self.audio, config.audio, example)}
        self._streams = {
            "visual": _Stream(self.visual, self.modes["visual"], self.batch_clips, clip, torch.uint8, self.device,
                              self._normalise),
            "audio": _Stream(self.audio, self.modes["audio"], 4 * self.batch_clips, example, torch.float32,
                             self.device, lambda x: x),
        }
        self._pending: dict[int, _Pending] = {}

    def _pick(self, model: torch.nn.Module, name: str, item: tuple[int, ...]) -> RunMode:
        """The fastest layout (and precision, see runtime) for ``model``, timed on a small batch."""
        n = min(self.batch_clips, 32 if self.device.type == "cuda" else 4)
        n = n if len(item) == 4 else 4 * n
        return pick_mode(model, torch.randn((n, *item), device=self.device), key=name,
                         precision=self.config.precision)[0]

    def add(self, index: int, item: DecodedItem) -> list[tuple[int, VideoFeatures]]:
        """Queue one decoded video; returns the videos whose features are all back (any order). Every
        spatial view of a clip is a row of its own for the visual backbone (V views: V times its work)."""
        k, m = len(item.clips), len(item.examples)
        self._pending[index] = _Pending(item, np.zeros((k, self.visual_dim), np.float32),
                                        np.zeros((m, self.audio_dim), np.float32), k + m)
        self._streams["visual"].push(index, item.clips)
        self._streams["audio"].push(index, item.examples)
        for stream in self._streams.values():
            stream.launch(final=False)
        return self._finished(block=False)

    def flush(self) -> list[tuple[int, VideoFeatures]]:
        """Run what is queued and return every video still pending."""
        for stream in self._streams.values():
            stream.launch(final=True)
        return self._finished(block=True)

    def _finished(self, block: bool) -> list[tuple[int, VideoFeatures]]:
        for name, stream in self._streams.items():
            for index, first, take, feats in stream.collect(block):
                p = self._pending[index]
                (p.visual if name == "visual" else p.audio)[first:first + take] = feats
                p.left -= take
        done = [i for i, p in self._pending.items() if p.left == 0]
        out = []
        for i in done:
            p = self._pending.pop(i)
            it = p.item
            v = p.visual.reshape(-1, it.views, p.visual.shape[-1])  # (k, V, Dv)
            centre = self.config.views.centre if it.views > 1 else 0
            out.append((i, VideoFeatures(it.status, it.error, it.duration, it.fps, v[:, centre], p.audio,
                                         v if it.views > 1 else None)))
        return out


def embed_files(paths: list[str], config: ExtractConfig, device: str = "cpu",
                batch_clips: int = 16) -> list[VideoFeatures]:
    """Features of a handful of files in this process (no Dask), decoded and embedded exactly as an
    extraction worker does it (backbones seeded the same way): one :class:`VideoFeatures` per path, in
    order; a file that does not decode has its status and empty features."""
    embedder = BatchEmbedder(config, device, batch_clips)
    feats: dict[int, VideoFeatures] = {}
    for i, path in enumerate(paths):
        row = ManifestRow(os.path.splitext(os.path.basename(str(path)))[0], str(path), -1, "", "",
                          exists=os.path.exists(str(path)))
        feats.update(embedder.add(i, decode_item(row, config)))
    feats.update(embedder.flush())
    return [feats[i] for i in range(len(paths))]
