"""Raw videos -> padded batches of uint8 clips and log-mel examples, decoded in DataLoader workers.

Training items are augmented (:mod:`cavnet.finetune.augment`) with a generator seeded by (seed, epoch,
index), so a batch is the same whatever the worker count, the process it lands in, or a resume. Evaluation
items are decoded exactly as extraction decodes them (:func:`cavnet.extract.embed.decode_item`).
A training video that does not decode is replaced by another one picked by the same generator, so every
batch keeps its size (distributed processes must take the same number of steps).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from cavnet.extract.media.frontends import audio_examples
from cavnet.finetune.augment import AugmentConfig, augment_audio, augment_clips, clip_centres, train_sampling
from cavnet.extract.config import ExtractConfig
from cavnet.extract.media.decode import decode_with
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.media.sampling import valid_count
from cavnet.extract.embed import decode_item
from cavnet.finetune.distributed import DistEnv
from cavnet.fuse.run.optim import steps_per_epoch

RETRIES = 10  # other videos tried in place of one that does not decode (training)


@dataclass
class Item:
    """One decoded video: ``clips`` (k, T, S, S, 3) uint8 (k = 0: not decodable), ``examples`` (j, 1, F, M)
    float32, its manifest ``position``, ``status`` and whether it stands in for a broken video."""

    clips: torch.Tensor
    examples: torch.Tensor
    label: int
    position: int
    status: str
    substitute: bool = False


@dataclass
class ClipBatch:
    """clips (B, n, T, S, S, 3) uint8, vmask (B, n), examples (B, m, 1, F, M) float32, amask (B, m),
    labels (B,), positions (B,) manifest rows, valid (B,) decodable, substitutes: stand-ins in the batch."""

    clips: torch.Tensor
    vmask: torch.Tensor
    examples: torch.Tensor
    amask: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    statuses: list[str]
    substitutes: int = 0

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.clips, self.vmask, self.examples, self.amask, self.labels, self.positions, self.valid)

    def pin_memory(self) -> "ClipBatch":
        return ClipBatch(*(t.pin_memory() for t in self._tensors()), self.statuses, self.substitutes)

    def to(self, device: torch.device) -> "ClipBatch":
        nb = device.type == "cuda"
        return ClipBatch(*(t.to(device, non_blocking=nb) for t in self._tensors()), self.statuses,
                         self.substitutes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class VideoClips(Dataset):
    """Manifest rows as :class:`Item`; training items (``augment`` given) are indexed ``(index, epoch)``."""

    def __init__(self, rows: Sequence[ManifestRow], config: ExtractConfig, augment: AugmentConfig | None = None,
                 seed: int = 0) -> None:
        self.rows, self.config, self.augment, self.seed = list(rows), config, augment, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        if self.augment is None:
            return self._plain(int(key) if not isinstance(key, tuple) else key[0])
        index, epoch = key
        rng = np.random.default_rng([self.seed, epoch, index])
        for attempt in range(RETRIES + 1):
            item = self._train(index, rng) if self.augment.enabled else self._plain(index)
            if len(item.clips) or len(self) == 1:
                item.substitute = attempt > 0
                return item
            index = int(rng.integers(len(self)))
        return item

    def _plain(self, index: int) -> Item:
        row = self.rows[index]
        d = decode_item(row, self.config, threads=1)
        return Item(torch.from_numpy(d.clips), torch.from_numpy(d.examples), row.label, index, d.status)

    def _train(self, index: int, rng: np.random.Generator) -> Item:
        """Decode with the jittered, larger sampling; crop, flip, shift and scale at random."""
        row, c, aug = self.rows[index], self.config, self.augment
        s = c.sampling
        wide = train_sampling(s, aug)
        d = decode_with(c.decoder, row.path, wide, c.logmel, c.audio_sampling.segments, threads=1)
        if len(d.clips) and len(d.clips) < valid_count(d.duration * d.fps, s.frames, s.clips):
            wide = train_sampling(s, dataclasses.replace(aug, jitter_frames=0))  # a short video: no jitter,
            d = decode_with(c.decoder, row.path, wide, c.logmel, c.audio_sampling.segments, 1)  # every clip kept
        if len(d.clips) == 0:
            return Item(torch.zeros((0,), dtype=torch.uint8), torch.zeros((0,)), row.label, index, d.status)
        clips, offsets = augment_clips(d.clips, s.frames, s.size, aug, rng)
        centres = clip_centres(d.clip_times, offsets, wide.frames, s.frames, d.fps)
        wave, centres = augment_audio(d.audio, centres, aug, rng)
        examples = audio_examples(wave, c, centres, d.duration)
        return Item(clips, torch.from_numpy(examples), row.label, index, d.status)


def collate(items: list[Item], config: ExtractConfig) -> ClipBatch:
    """Pad every video to the config's ``n`` clips and ``m`` examples; masks mark what is real."""
    s, lm = config.sampling, config.logmel
    n, m, b = s.clips, config.audio_sampling.segments, len(items)
    clips = torch.zeros((b, n, s.frames, s.size, s.size, 3), dtype=torch.uint8)
    examples = torch.zeros((b, m, 1, lm.example_frames, lm.n_mels), dtype=torch.float32)
    vmask, amask = torch.zeros((b, n), dtype=torch.bool), torch.zeros((b, m), dtype=torch.bool)
    for i, it in enumerate(items):
        k, j = min(len(it.clips), n), min(len(it.examples), m)
        if k:
            clips[i, :k], vmask[i, :k] = it.clips[:k], True
        if j:
            examples[i, :j], amask[i, :j] = it.examples[:j], True
    return ClipBatch(clips, vmask, examples, amask, torch.tensor([it.label for it in items], dtype=torch.long),
                     torch.tensor([it.position for it in items], dtype=torch.long), vmask.any(dim=1),
                     [it.status for it in items], sum(it.substitute for it in items))


class EpochSampler(Sampler):
    """This process's share of one epoch (``DistributedSampler``: seeded shuffle, padded to equal shares),
    each index tagged with the epoch for the augmentation generator; ``skip`` drops the first indices
    (a resume in the middle of an epoch)."""

    def __init__(self, dataset: Dataset, world: int, rank: int, seed: int) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.epoch) for i in itertools.islice(iter(self.inner), self.skip, None))

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


class TrainBatches(BatchSampler):
    """Batches of ``batch_size`` indices of ``sampler``; the trailing batch is kept unless it holds one video
    over all ``world`` processes (see ``fuse.run.optim.steps_per_epoch``)."""

    def __init__(self, sampler: Sampler, batch_size: int, world: int = 1) -> None:
        super().__init__(sampler, batch_size, drop_last=False)
        self.world = world

    def __iter__(self) -> Iterator[list]:
        for batch in super().__iter__():
            if len(batch) == self.batch_size or len(batch) * self.world >= 2:
                yield batch

    def __len__(self) -> int:
        return steps_per_epoch(len(self.sampler), self.batch_size, self.world)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decode processes: one thread each, FFmpeg and torch alike


class _Collate:
    """Picklable ``collate`` bound to a config (DataLoader workers start with forkserver)."""

    def __init__(self, config: ExtractConfig) -> None:
        self.config = config

    def __call__(self, items: list[Item]) -> ClipBatch:
        return collate(items, self.config)


def make_loader(dataset: VideoClips, batch_size: int, workers: int, device: torch.device,
                sampler: Sampler | None = None, indices: Sequence[int] | None = None, world: int = 1) -> DataLoader:
    """A DataLoader over ``dataset`` with ``workers`` persistent decode processes (``forkserver``: never a
    fork of a process that holds CUDA); ``sampler`` for training (``TrainBatches``: a trailing batch of one
    video over the ``world`` processes is dropped), else the ``indices`` in order."""
    kwargs = {}
    if workers > 0:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cavnet.finetune.data"])
        kwargs = dict(multiprocessing_context=ctx, persistent_workers=True, prefetch_factor=4,
                      worker_init_fn=_worker_init)
    batches = (TrainBatches(sampler, batch_size, world) if sampler is not None
               else BatchSampler(list(indices), batch_size, drop_last=False))
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_Collate(dataset.config),
                      pin_memory=device.type == "cuda", generator=torch.Generator(), **kwargs)


def eval_loader(rows: list[ManifestRow], config: ExtractConfig, device: torch.device, env: DistEnv,
                batch_size: int, workers: int) -> DataLoader:
    """Batches of ``rows`` decoded as extraction decodes them; this process takes every W-th row."""
    return make_loader(VideoClips(rows, config), batch_size, workers, device,
                       indices=range(env.rank, len(rows), env.world))
