"""A Kinetics-size feature store, written and read as cavnet does: consolidation time and peak disk, store
size, a split read into RAM, and streamed and in-memory fuse-train speed. Not a test: a measurement.

    .venv/bin/python bench/kinetics_store.py --rows 240000 --work /data/tmp [--json out.json]

Shards of ``--shard-rows`` random videos with the real dimensions (train first, then a val split of one
twelfth, in the order the Kinetics CSVs list them) (10 clips x 2048 visual, 10 segments x
2048 audio, float16) are committed as extraction commits them, then consolidated into one store while a
thread samples the free disk space (peak use = shards + store). ``--ram-rows`` rows of the val split are
read into RAM (the rate says how long a whole split takes), and each training path runs for
``--seconds`` (fuse-train's real model, loss and optimiser, CPU or ``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GB = 1e9


def write_shards(folder: Path, rows: int, shard_rows: int, dims, config_json: str):
    """Commit the shards of ``rows`` random videos; returns (manifest, shard paths, seconds)."""
    from cavnet.extract.manifest import Manifest, ManifestRow
    from cavnet.extract.status import OK
    from cavnet.extract.store.writer import VideoFeatures, write_shard

    classes = tuple(f"class {c:03d}" for c in range(400))
    rng = np.random.default_rng(0)
    block_v = rng.standard_normal((shard_rows, dims.clips, dims.visual_dim), dtype=np.float32).astype(np.float16)
    block_a = rng.standard_normal((shard_rows, dims.segments, dims.audio_dim), dtype=np.float32).astype(np.float16)
    manifest_rows, paths, t0 = [], [], time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        part = [ManifestRow(f"video{i:07d}", f"/k400/video{i:07d}.mp4", i % 400, classes[i % 400],
                            "val" if i >= rows - rows // 12 else "train") for i in range(start, start + n)]
        feats = [VideoFeatures(OK, "", 10.0, 30.0, block_v[j], block_a[j]) for j in range(n)]
        paths.append(folder / f"shard-{k:05d}.h5")
        write_shard(paths[-1], start, part, feats, dims, config_json)
        manifest_rows += part
    return Manifest(tuple(manifest_rows), classes), paths, time.perf_counter() - t0


class DiskWatch:
    """Samples the used space of a filesystem every 0.2 s; ``peak`` is the most seen above ``base``."""

    def __init__(self, path: Path) -> None:
        self.path, self.base, self.peak = path, shutil.disk_usage(path).used, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, shutil.disk_usage(self.path).used - self.base)
            time.sleep(0.2)

    def __enter__(self) -> "DiskWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def train_rate(store, split, seconds: float, device: str, batch: int) -> float:
    """fuse-train videos/s of the real training step fed by ``split`` for at least ``seconds``."""
    import torch

    from cavnet.fuse.engine import train_one_epoch
    from cavnet.fuse.train_config import TrainConfig
    from cavnet.fuse.run.fusion import build_training, fusion_config_for

    dev = torch.device(device)
    tcfg = TrainConfig(batch_size=batch, device=device)
    model, loss_fn, opt, sched = build_training(fusion_config_for(store, {}), tcfg, 10**6, dev)
    class_emb = torch.from_numpy(store.class_embedding).to(dev)
    batches = split.batches(batch, torch.Generator().manual_seed(0))
    t0, seen = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        chunk = [b for _, b in zip(range(8), batches)]
        if not chunk:
            break
        seen += int(train_one_epoch(model, loss_fn, opt, sched, chunk, class_emb, "label", dev)["videos"])
    return seen / (time.perf_counter() - t0)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from cavnet import __version__
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.extract.store.writer import StoreDims, TextTables, consolidate
    from cavnet.fuse.data import InMemorySplit, StreamedSplit
    from cavnet.extract.config import ExtractConfig

    dims = StoreDims(10, 10, 2048, 2048)
    config = ExtractConfig(visual="resnext3d-101", audio="resnet50-audio")
    work, out = args.work, args.work / "k400.h5"
    out.unlink(missing_ok=True)
    with DiskWatch(work) as disk:
        manifest, shards, t_shards = write_shards(work / "k400.h5.shards", args.rows, args.shard_rows, dims,
                                                  config.to_json())
        shard_bytes = sum(p.stat().st_size for p in shards)
        rng = np.random.default_rng(1)
        class_emb = rng.standard_normal((400, 384)).astype(np.float32)
        texts = TextTables(list(manifest.classes), [f"a video of {c}" for c in manifest.classes], class_emb,
                           class_emb[[r.label for r in manifest.rows]], "bench-random-text")
        t0 = time.perf_counter()
        consolidate(out, shards, manifest, dims, texts, config.to_json(), __version__)
        t_consolidate = time.perf_counter() - t0
    shutil.rmtree(work / "k400.h5.shards")
    report: dict[str, Any] = {"rows": args.rows, "dims": dims.__dict__, "shards_s": t_shards,
                              "shards_gb": shard_bytes / GB, "consolidate_s": t_consolidate,
                              "store_gb": out.stat().st_size / GB, "peak_disk_gb": disk.peak / GB}
    with FeatureStore(out) as store:
        rows = store.rows()
        val = rows.select("val")[: args.ram_rows]
        t0 = time.perf_counter()
        in_ram = InMemorySplit(store, val, "label")
        t_read = time.perf_counter() - t0
        report.update(ram_rows=len(val), ram_read_s=t_read, ram_read_rows_per_s=len(val) / t_read,
                      train_rows=int((rows.splits == "train").sum()), val_rows=int((rows.splits == "val").sum()))
        report["memory_fed_videos_per_s"] = train_rate(store, in_ram, args.seconds, args.device, args.batch)
        del in_ram
        streamed = StreamedSplit(store, rows.select("train"), "label")
        report["store_fed_videos_per_s"] = train_rate(store, streamed, args.seconds, args.device, args.batch)
    if not args.keep:
        out.unlink()
    return report


def table(r: dict[str, Any]) -> str:
    ram_split_s = r["train_rows"] / r["ram_read_rows_per_s"]
    return "\n".join([
        f"Kinetics-size store: {r['rows']} videos, 10 x 2048 visual + 10 x 2048 audio float16",
        f"  shards: {r['shards_gb']:.1f} GB written in {r['shards_s']:.0f} s",
        f"  consolidation: {r['consolidate_s']:.0f} s; store {r['store_gb']:.1f} GB; "
        f"peak disk (shards + store) {r['peak_disk_gb']:.1f} GB",
        f"  read into RAM: {r['ram_read_rows_per_s']:.0f} videos/s ({r['ram_rows']} val rows in "
        f"{r['ram_read_s']:.1f} s; the {r['train_rows']}-video train split: ~{ram_split_s:.0f} s)",
        f"  fuse-train step: memory-fed {r['memory_fed_videos_per_s']:.0f} videos/s, store-fed (streamed) "
        f"{r['store_fed_videos_per_s']:.0f} videos/s; train epoch ~{r['train_rows'] / r['memory_fed_videos_per_s']:.0f}"
        f" s / ~{r['train_rows'] / r['store_fed_videos_per_s']:.0f} s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=240_000)
    p.add_argument("--shard-rows", type=int, default=2048)
    p.add_argument("--ram-rows", type=int, default=20_000, help="val rows read into RAM")
    p.add_argument("--seconds", type=float, default=30.0, help="per training path")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--keep", action="store_true", help="keep the store")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = measure(args)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
