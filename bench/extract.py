"""End-to-end extraction figures of ``cavnet bench``: the Dask stage in steady state, and a whole run.

Steady state: one local cluster is started and warmed up (models built, layouts measured, decode pools
started). Then each repeat runs three passes over the whole corpus, cut into the same shards, on the same
workers, in an order rotated per repeat: decode only (the worker's own decode path, inline or its pool),
backbones only (a decoded corpus video fed to the worker's own embedder once per row) and the real task
(:func:`~cavnet.pipelines.extract.worker.run_shard`: decode, backbones, shard file committed). So the
three figures the extract ratio compares come from the same processes at the same time. Cluster start,
model loading and text embedding are excluded; they are timed apart, and a complete ``run_extract``
(everything included) is reported beside it.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from cavnet.extract.config import ExtractConfig
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.manifest import Manifest
from cavnet.bench.timing import summary


def _shards(manifest: Manifest, folder: Path, size: int, tag: str) -> list:
    from cavnet.pipelines.extract.worker import ShardSpec

    folder.mkdir(parents=True, exist_ok=True)
    rows = manifest.rows
    return [ShardSpec(i, start, rows[start:start + size], str(folder / f"{tag}-{i:05d}.h5"))
            for i, start in enumerate(range(0, len(rows), size))]


def shard_size(videos: int, workers: int, per_worker: int = 3) -> int:
    """Shards small enough that each worker gets ``per_worker`` of them (the tail stays short)."""
    return max(1, math.ceil(videos / (workers * per_worker)))


_SAMPLE: dict[str, object] = {}  # per worker process: one decoded corpus video for the backbone-only pass


def decode_only(spec, config_json: str, opts: RunOptions) -> int:
    """Dask task: decode a shard's videos the way the worker does, nothing else; returns the count."""
    from cavnet.pipelines.extract.worker import decoded_items

    config = ExtractConfig.from_json(config_json)
    return sum(1 for _ in decoded_items(spec.rows, config, opts, False))


def backbone_only(spec, config_json: str, opts: RunOptions) -> int:
    """Dask task: the worker's embedder over one decoded video per row of the shard; returns the count."""
    from cavnet.extract.embed import decode_item
    from cavnet.pipelines.extract.worker import worker_embedder

    config = ExtractConfig.from_json(config_json)
    if config_json not in _SAMPLE:
        _SAMPLE[config_json] = decode_item(spec.rows[0], config)
    item, embedder = _SAMPLE[config_json], worker_embedder(config, opts)
    done = sum(len(embedder.add(i, item)) for i in range(len(spec.rows)))  # type: ignore[arg-type]
    return done + len(embedder.flush())


def _pass(client, task, specs: list, config_json: str, opts: RunOptions, **where) -> float:
    """Seconds for ``task`` over every shard of ``specs`` (all submitted at once)."""
    t0 = time.perf_counter()
    futures = [client.submit(task, spec, config_json, opts, pure=False, **where) for spec in specs]
    [f.result() for f in futures]
    return time.perf_counter() - t0


def _steady(client, manifest: Manifest, config: ExtractConfig, opts: RunOptions, folder: Path,
            repeats: int) -> dict[str, Any]:
    from cavnet.pipelines.extract.worker import run_shard

    config_json = config.to_json()
    workers = sorted(client.scheduler_info()["workers"])
    per = min(max(1, 2 * opts.decode_workers), max(1, len(manifest) // len(workers)))  # fills the decode pools
    t0 = time.perf_counter()
    for task in (run_shard, decode_only, backbone_only):
        warm = _shards(Manifest(manifest.rows[:per * len(workers)], manifest.classes), folder / "warm", per,
                       task.__name__)
        for spec, w in zip(warm, workers):
            _pass(client, task, [spec], config_json, opts, workers=[w], allow_other_workers=False)
    warm_s = time.perf_counter() - t0
    tasks = {"extract": run_shard, "decode": decode_only, "backbone": backbone_only}
    figures: dict[str, list[float]] = {name: [] for name in tasks}
    for r in range(repeats):
        names = list(tasks)[r % 3:] + list(tasks)[:r % 3]
        for name in names:
            specs = _shards(manifest, folder / f"rep{r}-{name}", opts.shard_size, "shard")
            figures[name].append(len(manifest) / _pass(client, tasks[name], specs, config_json, opts))
            shutil.rmtree(folder / f"rep{r}-{name}")
    return {"videos_per_s": summary(figures["extract"]), "decode_videos_per_s": summary(figures["decode"]),
            "backbone_videos_per_s": summary(figures["backbone"]), "warmup_s": warm_s,
            "shard_size": opts.shard_size, "shards": math.ceil(len(manifest) / opts.shard_size)}


def measure_extract(manifest: Manifest, config: ExtractConfig, opts: RunOptions, folder: Path,
                    repeats: int, once: bool = True) -> dict[str, Any]:
    """Steady-state videos/s over Dask workers, the one-time costs, and (``once``) the text embedding and a
    whole ``run_extract`` run, start-up included."""
    from cavnet.pipelines.extract.cluster import dask_client

    section: dict[str, Any] = {"workers": opts.workers, "decode_workers": opts.decode_workers,
                               "batch_clips": opts.batch_clips, "device": opts.device}
    t0 = time.perf_counter()
    with dask_client(None, opts.workers, opts.device, echo=lambda _: None) as client:
        section["cluster_start_s"] = time.perf_counter() - t0
        section["steady"] = _steady(client, manifest, config, opts, folder / "steady", repeats)
    if once:
        section["text_embedding_s"] = _time_texts(manifest, config, opts.device)
        section["whole_run"] = _whole_run(manifest, config, opts, folder / "whole.h5")
    return section


def _time_texts(manifest: Manifest, config: ExtractConfig, device: str) -> float | str:
    """Seconds to load the text model and embed the corpus texts once (on the client)."""
    from cavnet.extract.text_tables import embed_texts

    t0 = time.perf_counter()
    try:
        embed_texts(manifest, config, device)
    except Exception as exc:  # no sentence-transformers model here: report, keep measuring
        return f"unavailable ({type(exc).__name__}: {str(exc)[:120]})"
    return time.perf_counter() - t0


def _whole_run(manifest: Manifest, config: ExtractConfig, opts: RunOptions, out: Path) -> dict[str, Any]:
    """One complete ``cavnet extract`` as a user runs it: cluster, models, texts, store; start-up included."""
    from cavnet.pipelines.extract.run import run_extract

    out.unlink(missing_ok=True)
    try:
        summary_ = run_extract(manifest, config, opts, out, echo=lambda _: None, progress=False)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        shutil.rmtree(out.with_name(out.name + ".shards"), ignore_errors=True)
    out.unlink(missing_ok=True)
    return {"seconds": summary_.seconds, "videos_per_s": summary_.videos / summary_.seconds}
