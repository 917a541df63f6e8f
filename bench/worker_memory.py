"""Worker memory over a long extraction: does a worker's resident memory stay flat after warm-up?

    .venv/bin/python bench/worker_memory.py --videos 300 --shard-size 10 [--decode-workers 2]

Writes a corpus of short videos (mixed containers, sample rates and channel layouts, one in ten damaged:
zero bytes, truncated, no audio), extracts it with ONE local CPU worker (tiny backbones, so decoding and
bookkeeping dominate) and records, after every shard, the worker's resident set size and that of its
children (decode processes, when ``--decode-workers`` > 0). The growth after warm-up is the slope of a
least-squares line through those points, in MiB per 100 videos; the script exits 1 when it exceeds
``--max-slope``. A leak of even 100 KiB per video would show as about 10 MiB per 100 videos.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (container, audio sample rate, channels): every tenth video is damaged instead, see _damage
_KINDS = [(".mp4", 16000, 1), (".mp4", 44100, 2), (".mkv", 48000, 2), (".webm", 48000, 1), (".mp4", 8000, 1)]


def _frames(i: int, count: int, size: tuple[int, int]) -> np.ndarray:
    """``(count, H, W, 3)`` uint8: a moving gradient, so the decoder has real work to do."""
    w, h = size
    x = np.arange(w)[None, None, :] + 4 * np.arange(count)[:, None, None] + 7 * i
    y = np.arange(h)[None, :, None]
    base = ((x + y) % 256).astype(np.uint8)
    return np.stack([base, np.roll(base, 5, axis=2), 255 - base], axis=-1)


def _damage(path: Path, i: int) -> None:
    """Every tenth video: zero bytes, truncated to a third, or re-written without audio."""
    from cavnet.extract.synth.avwrite import write_video

    kind = (i // 10) % 3
    if kind == 0:
        path.write_bytes(b"")
    elif kind == 1:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])
    else:
        write_video(path, _frames(i, 50, (320, 240)), 25.0)


def write_corpus(root: Path, videos: int, seconds: float = 2.0) -> Path:
    """``videos`` files under ``root`` and a CSV manifest; returns the manifest."""
    from cavnet.extract.synth.avwrite import write_video

    lines = ["path,label,split"]
    for i in range(videos):
        suffix, rate, channels = _KINDS[i % len(_KINDS)]
        path = root / f"v{i:05d}{suffix}"
        t = np.arange(int(seconds * rate)) / rate
        audio = np.repeat((0.3 * np.sin(2 * np.pi * (220 + i) * t))[None].astype(np.float32), channels, axis=0)
        write_video(path, _frames(i, int(25 * seconds), (320, 240)), 25.0, audio, rate)
        if i % 10 == 9:
            _damage(path, i)
        lines.append(f"{path},c{i % 4},train")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def slope_per_100(videos: np.ndarray, mib: np.ndarray) -> float:
    """Least-squares slope of ``mib`` against ``videos`` done, in MiB per 100 videos."""
    if len(videos) < 2:
        return 0.0
    return float(np.polyfit(videos, mib, 1)[0] * 100)


def measure(manifest_csv: Path, out: Path, shard_size: int, decode_workers: int) -> list[dict]:
    """Extract with one worker; one record per shard: videos done, worker and children RSS (MiB)."""
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.extract.run import run_extract
    from cavnet.extract.backbones.pretrained import extract_config
    from cavnet.extract.datasets import load_manifest

    manifest = load_manifest("csv", None, manifest_csv)
    config = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default",
                            "a video of a person {label}", clips=4, segments=4)
    opts = RunOptions(shard_size=shard_size, workers=1, decode_workers=decode_workers, device="cpu")
    records: list[dict] = []

    def on_shard(result) -> None:
        done = (records[-1]["videos"] if records else 0) + sum(result.counts.values())
        records.append({"shard": result.index, "videos": done, "worker": result.worker,
                        "rss_mib": round(result.rss_mib, 1), "children_rss_mib": round(result.children_rss_mib, 1)})

    run_extract(manifest, config, opts, out, echo=lambda _: None, progress=False, on_shard=on_shard)
    return records


def report(records: list[dict], warmup: float) -> dict:
    """Growth after the first ``warmup`` share of the shards, for the worker and for its children."""
    start = max(1, int(len(records) * warmup))
    tail = records[start:]
    videos = np.array([r["videos"] for r in tail], float)
    out = {"shards": len(records), "warmup_shards": start, "workers_seen": sorted({r["worker"] for r in records})}
    for key in ("rss_mib", "children_rss_mib"):
        values = np.array([r[key] for r in tail], float)
        out[key] = {"after_warmup": float(values[0]), "end": float(values[-1]),
                    "min": float(values.min()), "max": float(values.max()),
                    "slope_mib_per_100_videos": round(slope_per_100(videos, values), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--decode-workers", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the shards ignored at the start")
    parser.add_argument("--max-slope", type=float, default=2.0, help="MiB per 100 videos allowed after warm-up")
    parser.add_argument("--keep", type=Path, default=None, help="write the corpus and store here and keep them")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="cavnet-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        manifest = write_corpus(work, args.videos)
        t1 = time.perf_counter()
        records = measure(manifest, work / "store.h5", args.shard_size, args.decode_workers)
        t2 = time.perf_counter()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for r in records:
        print(f"shard {r['shard']:4d}  videos {r['videos']:5d}  worker {r['rss_mib']:8.1f} MiB  "
              f"children {r['children_rss_mib']:8.1f} MiB")
    result = report(records, args.warmup)
    result.update(videos=args.videos, decode_workers=args.decode_workers, corpus_seconds=round(t1 - t0, 1),
                  extract_seconds=round(t2 - t1, 1))
    print(json.dumps(result, indent=1))
    worst = max(result["rss_mib"]["slope_mib_per_100_videos"], result["children_rss_mib"]["slope_mib_per_100_videos"])
    verdict = "flat" if worst <= args.max_slope else "GROWING"
    print(f"{verdict}: worst slope {worst:.2f} MiB per 100 videos after warm-up (limit {args.max_slope})")
    return 0 if worst <= args.max_slope else 1


if __name__ == "__main__":
    sys.exit(main())
