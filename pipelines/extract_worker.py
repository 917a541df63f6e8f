"""What runs inside a Dask worker: models loaded once per process, one shard decoded and embedded.

The models live in a per-process cache keyed by the extraction config; they never travel in the task
graph. Decoding happens inline (``decode_workers == 0``) or in a pool of decode processes started with
``forkserver`` and kept alive across shards. In ``isolate`` mode every video is decoded in a process of
its own, so a file that crashes the decoder costs only its own row (status ``worker_crash``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from cavnet.extract.config import ExtractConfig, RunOptions
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.store import StoreDims, VideoFeatures, write_shard
from cavnet.pipelines.extract_batch import BatchEmbedder, DecodedItem, decode_item

_STATE: dict[str, object] = {}


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``start .. start + len(rows)`` of the manifest, committed to ``path``."""

    index: int
    start: int
    rows: tuple[ManifestRow, ...]
    path: str
    isolate: bool = False


@dataclass
class ShardResult:
    index: int
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    worker: str = ""


def _embedder(config: ExtractConfig, opts: RunOptions) -> BatchEmbedder:
    key = "embedder:" + config.to_json() + opts.device
    if key not in _STATE:
        threads = int(os.environ.get("CAVNET_TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        _STATE.clear() if any(k.startswith("embedder:") for k in _STATE) else None
        _STATE[key] = BatchEmbedder(config, opts.device, opts.batch_clips)
    return _STATE[key]  # type: ignore[return-value]


def _pool(workers: int) -> ProcessPoolExecutor:
    pool = _STATE.get("pool")
    if pool is None or getattr(pool, "_broken", False) or pool._max_workers != workers:  # type: ignore[attr-defined]
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver"))
        _STATE["pool"] = pool
    return pool  # type: ignore[return-value]


def _decoded(rows: Sequence[ManifestRow], config: ExtractConfig, opts: RunOptions,
             isolate: bool) -> Iterator[DecodedItem]:
    """Decoded videos in manifest order; decoding runs ahead of the consumer by a bounded window."""
    if isolate:
        for row in rows:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("forkserver")) as one:
                try:
                    yield one.submit(decode_item, row, config).result()
                except BrokenProcessPool:
                    yield DecodedItem.failed("worker_crash", "the decoder process died on this file")
        return
    if opts.decode_workers <= 0:
        for row in rows:
            yield decode_item(row, config)
        return
    pool, window = _pool(opts.decode_workers), 2 * opts.decode_workers
    futures = [pool.submit(decode_item, row, config) for row in rows[:window]]
    for i in range(len(rows)):
        if i + window < len(rows):
            futures.append(pool.submit(decode_item, rows[i + window], config))
        yield futures[i].result()  # a dead decoder raises: the shard is redone in isolate mode


def run_shard(spec: ShardSpec, config_json: str, opts: RunOptions) -> ShardResult:
    """Decode and embed every video of a shard, then commit the shard file (idempotent)."""
    t0 = time.perf_counter()
    config = ExtractConfig.from_json(config_json)
    embedder = _embedder(config, opts)
    feats: list[VideoFeatures | None] = [None] * len(spec.rows)
    for i, item in enumerate(_decoded(spec.rows, config, opts, spec.isolate)):
        for j, vf in embedder.add(i, item):
            feats[j] = vf
    for j, vf in embedder.flush():
        feats[j] = vf
    dims = StoreDims(config.sampling.clips, config.audio_sampling.segments, embedder.visual_dim, embedder.audio_dim)
    write_shard(Path(spec.path), spec.start, spec.rows, feats, dims, config_json)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    for vf in feats:
        counts[vf.status] = counts.get(vf.status, 0) + 1  # type: ignore[union-attr]
    return ShardResult(spec.index, counts, time.perf_counter() - t0, f"pid {os.getpid()}")
