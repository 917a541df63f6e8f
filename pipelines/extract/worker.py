"""What runs inside a Dask worker: models loaded once per process, one shard decoded and embedded.

The models live in a per-process cache keyed by the extraction config; they never travel in the task
graph. Randomly initialised backbones (no weight file) are built from a fixed seed, so every worker and
every rerun computes the same features. Decoding happens inline (``decode_workers == 0``) or in a pool
of decode processes started with ``forkserver`` and kept alive across shards. In ``isolate`` mode every
video is decoded in a process of its own, so a file that crashes the decoder costs only its own row
(status ``worker_crash``); a pool whose process dies falls back to that mode for the rest of the shard.

A shard already committed with the same rows is not recomputed (Dask may run a task twice), and one
process runs one shard at a time (the batch embedder keeps state between calls).
"""

from __future__ import annotations

import os
from collections import Counter
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from functools import partial
from typing import Callable, Iterator, Sequence, TypeVar

import torch

from cavnet.extract import faults
from cavnet.extract.config import ExtractConfig
from cavnet.extract.device import decode_workers
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.status import WORKER_CRASH
from cavnet.extract.store.writer import StoreDims, VideoFeatures, shard_statuses, write_shard
from cavnet.extract.embed import BatchEmbedder, DecodedItem, decode_item

_STATE: dict[str, object] = {}
_LOCK = threading.Lock()
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``start .. start + len(rows)`` of the manifest, committed to ``path``."""

    index: int
    start: int
    rows: tuple[ManifestRow, ...]
    path: str
    isolate: bool = False
    attempt: int = 0  # submissions after a lost worker


@dataclass
class ShardResult:
    """Counts by status of one shard, and the worker's resident memory (MiB) after it."""

    index: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""
    rss_mib: float = 0.0
    children_rss_mib: float = 0.0
    reused: bool = False


def decode_row(row: ManifestRow, config: ExtractConfig, armed: dict[str, str] | None = None,
               device: str = "cpu") -> DecodedItem:
    """Decode one manifest row; the tests' fault hook runs first, with the faults ``armed`` by the process
    that handed the row over (None: this process's). ``device``: see :func:`decode_device`."""
    faults.before_open(row.path, armed)
    return decode_item(row, config, device=device, views=True)


def decode_device(config: ExtractConfig, opts: RunOptions) -> str:
    """``cuda`` when the torchcodec decoder runs on a CUDA worker (it may then use NVDEC), else ``cpu``."""
    if config.decoder != "torchcodec":
        return "cpu"
    from cavnet.extract.device import resolve_device

    return "cuda" if resolve_device(opts.device).type == "cuda" else "cpu"


def worker_embedder(config: ExtractConfig, opts: RunOptions) -> BatchEmbedder:
    """This worker process's embedder for ``config`` (built once, kept across shards)."""
    key = config.to_json() + opts.device
    if _STATE.get("embedder_key") != key:
        threads = int(os.environ.get("CAVNET_TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        _STATE.pop("embedder", None)
        _STATE["embedder"] = BatchEmbedder(config, opts.device, opts.batch_clips)
        _STATE["embedder_key"] = key
    return _STATE["embedder"]  # type: ignore[return-value]


def _forkserver() -> BaseContext:
    """The ``forkserver`` context, its server preloading torch and PyAV so that forks start at once."""
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["cavnet.extract.embed"])
    return ctx


def _pool(workers: int) -> ProcessPoolExecutor:
    pool = _STATE.get("pool")
    if pool is None or getattr(pool, "_broken", False) or pool._max_workers != workers:  # type: ignore[attr-defined]
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)  # type: ignore[attr-defined]
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_forkserver())
        _STATE["pool"] = pool
    return pool  # type: ignore[return-value]


def isolated_map(func: Callable[[T], R], items: Sequence[T], crashed: Callable[[T], R]) -> Iterator[R]:
    """``func(item)`` for each item, each in a fresh process; ``crashed(item)`` for one whose process died."""
    for item in items:
        with ProcessPoolExecutor(max_workers=1, mp_context=_forkserver()) as one:
            try:
                yield one.submit(func, item).result()
            except BrokenProcessPool:
                yield crashed(item)


def _crashed(row: ManifestRow) -> DecodedItem:
    return DecodedItem.failed(WORKER_CRASH, "the decoding process died on this file")


def _isolated(rows: Sequence[ManifestRow], config: ExtractConfig, device: str = "cpu") -> Iterator[DecodedItem]:
    """Each row decoded in a fresh process; a process that dies costs its own row only."""
    return isolated_map(partial(decode_row, config=config, armed=faults.armed(), device=device), rows, _crashed)


def _pooled(rows: Sequence[ManifestRow], config: ExtractConfig, workers: int,
            device: str = "cpu") -> Iterator[DecodedItem]:
    """Decoding runs ahead of the consumer by a bounded window; a dead decoder sends the rest of the
    shard (from the first row not yet delivered) through :func:`_isolated`."""
    pool, window, armed = _pool(workers), 2 * workers, faults.armed()
    futures = [pool.submit(decode_row, row, config, armed, device) for row in rows[:window]]
    for i in range(len(rows)):
        try:
            if i + window < len(rows):
                futures.append(pool.submit(decode_row, rows[i + window], config, armed, device))
            item = futures[i].result()
        except BrokenProcessPool:
            _STATE.pop("pool", None)
            pool.shutdown(wait=False, cancel_futures=True)
            yield from _isolated(rows[i:], config, device)
            return
        yield item


def decoded_items(rows: Sequence[ManifestRow], config: ExtractConfig, opts: RunOptions,
                  isolate: bool) -> Iterator[DecodedItem]:
    """Decoded videos in manifest order (``opts.decode_workers`` None: the rule of
    ``extract.device.decode_workers``, as ``run_extract`` resolves it)."""
    device = decode_device(config, opts)
    if isolate:
        return _isolated(rows, config, device)
    workers = decode_workers(opts.decode_workers, opts.device)
    if workers > 0:
        return _pooled(rows, config, workers, device)
    return (decode_row(row, config, device=device) for row in rows)


def _memory() -> tuple[float, float]:
    """Resident memory (MiB) of this process and of all its children (decode processes)."""
    import psutil

    me = psutil.Process()
    children = 0
    for child in me.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.Error:
            continue
    return me.memory_info().rss / 2**20, children / 2**20


def _features(spec: ShardSpec, config: ExtractConfig, opts: RunOptions) -> list[VideoFeatures]:
    """Features of every row of ``spec``, in order; on any error the embedder (which holds the videos
    it has not run yet) is dropped, so the next shard starts clean."""
    embedder = worker_embedder(config, opts)
    feats: list[VideoFeatures | None] = [None] * len(spec.rows)
    try:
        for i, item in enumerate(decoded_items(spec.rows, config, opts, spec.isolate)):
            for j, vf in embedder.add(i, item):
                feats[j] = vf
        for j, vf in embedder.flush():
            feats[j] = vf
    except BaseException:
        _STATE.pop("embedder_key", None)
        raise
    return feats  # type: ignore[return-value]


def run_shard(spec: ShardSpec, config_json: str, opts: RunOptions) -> ShardResult:
    """Decode and embed every video of a shard, then commit the shard file (idempotent)."""
    t0 = time.perf_counter()
    with _LOCK:
        done = shard_statuses(Path(spec.path), spec.start, [r.video_id for r in spec.rows])
        if done is not None:
            return ShardResult(spec.index, dict(Counter(done)), time.perf_counter() - t0, f"pid {os.getpid()}",
                               *_memory(), reused=True)
        config = ExtractConfig.from_json(config_json)
        feats = _features(spec, config, opts)
        embedder = worker_embedder(config, opts)
        dims = StoreDims(config.sampling.clips, config.audio_sampling.segments, embedder.visual_dim,
                         embedder.audio_dim, config.views.count)
        write_shard(Path(spec.path), spec.start, spec.rows, feats, dims, config_json, faults.before_commit)  # type: ignore[arg-type]
    return ShardResult(spec.index, dict(Counter(vf.status for vf in feats)),  # type: ignore[union-attr]
                       time.perf_counter() - t0, f"pid {os.getpid()}", *_memory())
