"""Store rows -> training batches: in RAM when the split fits, else chunk-aligned block reads.

Both sources yield the same ``Batch`` type with float32 tensors, so the loop does not know which one
it is fed by. Shuffling is driven by a seeded ``torch.Generator`` per epoch (deterministic, resumable).

Spatial views (a store extracted with ``--views``/``--flip``): a split opened with ``views`` ``random``
holds every view of its rows and, given the epoch's generator, draws one view per video per epoch (after
the epoch's order, from the same generator: reproducible and resumable); ``all`` holds them for
``batches(view=v)`` (evaluation averages the views' scores, ``fuse.scoring.views``); ``centre`` (and any split of
a store of one view) reads only the centre view, as before views existed. Streamed splits do the same, view by
view as they read their blocks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from cavnet.extract.store.reader import FeatureStore, Features


@dataclass
class Batch:
    """visual (B, n, Dv), vmask (B, n), audio (B, m, Da), amask (B, m), text (B, Dt), labels (B,), groups (B,)."""

    visual: torch.Tensor
    vmask: torch.Tensor
    audio: torch.Tensor
    amask: torch.Tensor
    text: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        nb = device.type == "cuda"
        return Batch(*(t.to(device, non_blocking=nb) for t in (self.visual, self.vmask, self.audio, self.amask,
                                                                self.text, self.labels, self.groups)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def text_groups(text: np.ndarray) -> np.ndarray:
    """Group id per row: rows with identical text embeddings ``(N, Dt)`` share a group (positives).

    The id is a hash of the float16 embedding, so it is the same in every block of a streamed split.
    """
    rows = np.ascontiguousarray(text.astype(np.float16))
    return np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=7).digest(), "little")
                     for r in rows], dtype=np.int64)


def _to_batch(f: Features, groups: np.ndarray) -> Batch:
    return Batch(torch.from_numpy(f.visual), torch.from_numpy(f.vmask), torch.from_numpy(f.audio),
                 torch.from_numpy(f.amask), torch.from_numpy(f.text), torch.from_numpy(f.labels),
                 torch.from_numpy(groups))


def split_bytes(store: FeatureStore, rows: int, views: str = "centre") -> int:
    d = store.dims
    v = d.views if views != "centre" else 1
    return rows * 4 * (d.clips * d.visual_dim * v + d.segments * d.audio_dim + store.text_dim)


def available_memory() -> int:
    try:
        import psutil
        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class InMemorySplit:
    """All rows of a split held as float16 tensors on ``device``; batches are gathered and cast to float32
    there. On a GPU this is the device-resident split: no per-batch host work, no host-to-device copy. The
    shuffle order is drawn on the CPU from the epoch's generator, so every device sees the same batches.
    ``views``: ``centre``, ``random`` or ``all`` (see the module's docstring); ``self.views`` the views held."""

    def __init__(self, store: FeatureStore, index: np.ndarray, targets: str,
                 device: torch.device | str = "cpu", views: str = "centre") -> None:
        f = store.read(index)
        self.index, self.device = index, torch.device(device)
        self.mode = views if store.views > 1 else "centre"
        if self.mode != "centre":
            f.visual = store.read_views(index)  # (N, n, V, Dv)
        self.views = f.visual.shape[2] if f.visual.ndim == 4 else 1
        self.centre = store.centre_view
        groups = f.labels if targets == "label" else text_groups(f.text)
        host = (f.visual.astype(np.float16), f.vmask, f.audio.astype(np.float16), f.amask, f.text, f.labels, groups)
        (self.visual, self.vmask, self.audio, self.amask, self.text, self.labels,
         self.groups) = (torch.from_numpy(a).to(self.device) for a in host)

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                view: int | None = None) -> Iterator[Batch]:
        """Batches in the generator's order (else store order); ``view``: that view of every video (a split
        holding views), else with ``random`` views and a generator one drawn per video, else the centre."""
        order = torch.randperm(len(self), generator=generator) if generator is not None else torch.arange(len(self))
        pick = None
        if self.views > 1 and view is None:
            if self.mode == "random" and generator is not None:
                pick = torch.randint(self.views, (len(self),), generator=generator).to(self.device)
            else:
                view = self.centre
        for sel in order.to(self.device).split(batch_size):
            visual = self.visual[sel]
            if self.views > 1:
                rows = torch.arange(len(sel), device=self.device)
                visual = visual[:, :, view] if pick is None else visual[rows, :, pick[sel]]
            yield Batch(visual.float(), self.vmask[sel], self.audio[sel].float(), self.amask[sel],
                        self.text[sel], self.labels[sel], self.groups[sel])


class StreamedSplit:
    """Rows read from the store block by block, blocks aligned with the HDF5 chunks (for large stores).

    Shuffling permutes the blocks, then the rows inside a buffer of ``buffer_blocks`` blocks. ``views`` as
    :class:`InMemorySplit`'s: ``random`` draws one view per video as each buffer is read (from the epoch's
    generator), ``all`` reads the view ``batches(view=v)`` asks for, ``centre`` reads the centre view.
    """

    def __init__(self, store: FeatureStore, index: np.ndarray, targets: str, buffer_blocks: int = 8,
                 views: str = "centre") -> None:
        self.store, self.index, self.targets = store, index, targets
        self.buffer_blocks = buffer_blocks
        chunk = store.chunk_rows
        block_of = index // chunk
        self.blocks = [index[block_of == b] for b in np.unique(block_of)]
        self.mode = views if store.views > 1 else "centre"
        self.views = store.views if self.mode != "centre" else 1
        self.centre = store.centre_view

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, rows: np.ndarray, view: int | None, generator: torch.Generator | None) -> Batch:
        rows = np.sort(rows)
        f = self.store.read(rows)
        if self.views > 1 and view != self.centre:  # the centre view is what ``read`` gives
            every = self.store.read_views(rows)  # (B, n, V, Dv)
            if view is None:
                pick = (torch.randint(self.views, (len(rows),), generator=generator).numpy()
                        if self.mode == "random" and generator is not None else np.full(len(rows), self.centre))
            else:
                pick = np.full(len(rows), view)
            f.visual = np.ascontiguousarray(every[np.arange(len(rows)), :, pick])
        groups = f.labels if self.targets == "label" else text_groups(f.text)
        return _to_batch(f, groups)

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                view: int | None = None) -> Iterator[Batch]:
        order = (torch.randperm(len(self.blocks), generator=generator).tolist() if generator is not None
                 else list(range(len(self.blocks))))
        carry: Batch | None = None
        for at in range(0, len(order), self.buffer_blocks):
            rows = np.concatenate([self.blocks[b] for b in order[at:at + self.buffer_blocks]])
            buf = self._read(rows, view, generator)
            if generator is not None:
                perm = torch.randperm(len(buf), generator=generator)
                buf = Batch(*(t[perm] for t in _fields(buf)))
            if carry is not None:
                buf = Batch(*(torch.cat([a, b]) for a, b in zip(_fields(carry), _fields(buf))))
            full = len(buf) // batch_size * batch_size
            for s in range(0, full, batch_size):
                yield Batch(*(t[s:s + batch_size] for t in _fields(buf)))
            carry = Batch(*(t[full:] for t in _fields(buf))) if full < len(buf) else None
        if carry is not None:
            yield carry


def _fields(b: Batch) -> tuple[torch.Tensor, ...]:
    return (b.visual, b.vmask, b.audio, b.amask, b.text, b.labels, b.groups)


def open_split(store: FeatureStore, index: np.ndarray, targets: str, stream: bool = False,
               budget_bytes: int = 0, device: torch.device | str = "cpu",
               views: str = "centre") -> InMemorySplit | StreamedSplit:
    """The split in RAM if it fits the budget (default: half the available memory), else streamed; held on
    ``device`` when that is a GPU with room for it (half its free memory), else in host RAM. ``views``:
    ``centre``, ``random`` or ``all`` (module docstring), streamed or not."""
    budget = budget_bytes or available_memory() // 2
    if stream or split_bytes(store, len(index), views) > budget:
        return StreamedSplit(store, index, targets, views=views)
    return InMemorySplit(store, index, targets, resident_device(store, len(index), torch.device(device), views),
                         views)


def resident_device(store: FeatureStore, rows: int, device: torch.device, views: str = "centre") -> torch.device:
    """``device`` when the split's float16 features fit in half of its free memory, else the CPU."""
    if device.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if split_bytes(store, rows, views) // 2 < free // 2 else torch.device("cpu")
