"""``cavnet bench``: decode, backbone, extract, store-read and fuse-train speed on one generated corpus.

Everything runs in one process tree: the bench process, the measuring processes it spawns (one per worker
of the pipeline being stood for) and a local Dask cluster. Each figure is the median of ``repeats`` timed
repeats after a warm-up; the JSON keeps every repeat. The extract figure is steady state (cluster start,
model loading and text embedding are reported apart) and is compared with what decode and backbones allow:
``min(decode, backbone)`` on CUDA, where they overlap, and ``1 / (1/decode + 1/backbone)`` on CPU, where
each worker decodes and then runs the backbones on the same cores.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from cavnet import __version__
from cavnet.configs import MAX_BATCH, MAX_WORKERS, Config, check_device, check_int, check_number
from cavnet.errors import CavnetError

SECTIONS = ("decode", "backbone", "extract", "store")
# Done-when thresholds of the performance issue; the bench reports them, never fails on them.
TARGETS = {"decode cavnet/pyav-plain": 0.9, "decode cavnet/torchcodec": 1.0, "decode prepared/cavnet": 1.0,
           "extract steady/expected": 0.85, "fuse-train store/memory": 0.9, "fuse-train device/memory": 0.95}


@dataclass(frozen=True)
class BenchConfig(Config):
    """What to measure; None fields get defaults for the device and ``small`` (see :func:`resolve`);
    ``decode_workers`` None follows ``extract.device.decode_workers``'s rule for ``workers`` processes."""

    device: str = "auto"
    videos: int | None = None
    seconds: float | None = None
    workers: int | None = None
    decode_workers: int | None = None
    repeats: int | None = None
    batch_clips: int | None = None
    visual: str | None = None
    audio: str | None = None
    store_rows: int | None = None
    fuse_batch: int | None = None
    small: bool = False
    sections: tuple[str, ...] = SECTIONS
    work: str | None = None
    size: tuple[int, int] | None = None  # the corpus' frame size (W, H) [340x256]

    def __post_init__(self) -> None:
        check_device("--device", self.device, ("auto", "cpu", "cuda"))
        for name, low, top in (("videos", 1, 100_000), ("workers", 1, MAX_WORKERS), ("decode_workers", 0, MAX_WORKERS),
                               ("repeats", 1, 1000), ("batch_clips", 1, 1 << 16), ("store_rows", 1, 1 << 24),
                               ("fuse_batch", 2, MAX_BATCH)):
            if getattr(self, name) is not None:
                check_int("--" + name.replace("_", "-"), getattr(self, name), low, top)
        if self.seconds is not None:
            check_number("--seconds", self.seconds, 1.0, maximum=3600.0)


def resolve(cfg: BenchConfig, gpus: int) -> BenchConfig:
    """Fill the defaults: full-size models and corpus on CUDA, tiny models and a short corpus on CPU."""
    device = cfg.device if cfg.device != "auto" else ("cuda" if gpus else "cpu")
    if device == "cuda" and not gpus:
        raise CavnetError("--device cuda: no CUDA device is available here")
    cuda = device == "cuda"
    workers = cfg.workers or (gpus if cuda else 2)
    from cavnet.extract.device import decode_workers as rule

    decode_workers = rule(cfg.decode_workers, device, processes=workers)
    videos = cfg.videos or (4 if cfg.small else (128 if cuda else 16))
    videos = max(videos, workers * max(1, decode_workers) if cuda else workers)
    return replace(cfg, device=device, workers=workers, decode_workers=decode_workers, videos=videos,
                   seconds=cfg.seconds or (2.0 if cfg.small else 10.0), repeats=cfg.repeats or (2 if cfg.small else 3),
                   batch_clips=cfg.batch_clips or (128 if cuda else (4 if cfg.small else 16)),
                   visual=cfg.visual or ("resnext3d-101" if cuda else "resnext3d-tiny"),
                   audio=cfg.audio or ("resnet50-audio" if cuda else "audio-cnn-tiny"),
                   store_rows=cfg.store_rows or (96 if cfg.small else (4096 if cuda else 512)),
                   fuse_batch=cfg.fuse_batch or (24 if cfg.small else (256 if cuda else 64)))


def versions() -> dict[str, str]:
    import av
    import h5py
    import numpy
    import torch

    out = {"cavnet": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
           "av": av.__version__, "numpy": numpy.__version__, "h5py": h5py.__version__}
    lib = av.library_versions.get("libavcodec")
    out["libavcodec (PyAV)"] = ".".join(map(str, lib)) if lib else "?"
    try:
        import distributed
        out["distributed"] = distributed.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def help_seconds(repeats: int = 3) -> float:
    """Median wall time of ``cavnet --help`` in a fresh interpreter."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from cavnet.cli import main; main()", "--help"],
                       check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _pass_seconds(cfg: BenchConfig) -> float:
    """How long one timed pass of a decode variant or backbone mode runs at least."""
    return 0.25 if cfg.small else (1.0 if cfg.device == "cuda" else 2.0)


def _decode_processes(cfg: BenchConfig) -> int:
    """How many processes decode at once in the extraction being stood for."""
    return cfg.workers * cfg.decode_workers if cfg.decode_workers else cfg.workers


def run_bench(cfg: BenchConfig, echo: Callable[[str], None] = print,
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every section of ``cfg``; returns the report (also what ``--json`` writes).
    ``checkpoint(report)`` is called after each section (e.g. to save what is done so far)."""
    import torch

    start = time.perf_counter()
    say = echo
    echo = lambda m: say(f"[{time.perf_counter() - start:6.1f} s] {m}")  # noqa: E731

    from cavnet.bench.timing import gpu_info, machine_info

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cfg = resolve(cfg, gpus)
    threads = max(1, cores // _decode_processes(cfg))
    os.environ.setdefault("CAVNET_DECODE_THREADS", str(threads))
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": {**machine_info(), **gpu_info()},
        "versions": versions(), "settings": {**asdict(cfg), "decode_processes": _decode_processes(cfg),
                                             "ffmpeg_threads": threads,
                                             "torch_threads_per_worker": max(1, cores // cfg.workers)},
        "targets": TARGETS}
    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="cavnet-bench-"))
    try:
        _run_sections(cfg, report, work, threads, echo, checkpoint or (lambda _: None))
    finally:
        if not cfg.work:
            shutil.rmtree(work, ignore_errors=True)
    report["help_s"] = help_seconds()
    report["checks"] = checks(report)
    report["bench_seconds"] = time.perf_counter() - start
    echo("bench: done")
    return report


def _run_sections(cfg: BenchConfig, report: dict[str, Any], work: Path, threads: int,
                  echo: Callable[[str], None], checkpoint: Callable[[dict[str, Any]], None]) -> None:
    from cavnet.bench.corpus import CorpusSpec, make_corpus
    from cavnet.extract.backbones.pretrained import extract_config

    config = extract_config(cfg.visual, cfg.audio, None, None, "default", "a video of a person {label}", 10, 10,
                            random_ok=True)
    spec = CorpusSpec(cfg.videos, cfg.seconds, size=cfg.size or CorpusSpec.size)
    t0 = time.perf_counter()
    echo(f"bench: corpus of {spec.videos} videos ({spec.seconds:g} s, {spec.size[0]}x{spec.size[1]}, {spec.fps} fps)")
    manifest = make_corpus(work / "corpus", spec, os.cpu_count() or 1)
    report["settings"]["corpus"] = {**asdict(spec), "frames": spec.frames,
                                    "made_or_checked_s": time.perf_counter() - t0}
    for name in SECTIONS:
        if name in cfg.sections:
            echo(f"bench: {name}")
            report[name] = _SECTIONS[name](cfg, config, manifest, work, threads)
            checkpoint(report)


def _decode_section(cfg: BenchConfig, config, manifest, work: Path, threads: int) -> dict[str, Any]:
    """The decode figures, the ``prepared`` row on the corpus after ``cavnet prepare`` (short side 128 for the
    112-pixel crops of the bench's backbones, 256 for larger ones), made first with every core."""
    from cavnet.bench.corpus import prepare_corpus
    from cavnet.bench.decode import measure_decode

    short = 128 if config.sampling.short_side <= 128 else 256
    w, h = cfg.size or (340, 256)
    prepared, stats = prepare_corpus(manifest, work / f"prepared-{short}-{w}x{h}-{cfg.videos}x{cfg.seconds:g}s",
                                     short, os.cpu_count() or 1)
    section = measure_decode(manifest.rows, config, _decode_processes(cfg), threads, cfg.repeats, _pass_seconds(cfg),
                             prepared, cfg.device)
    section["prepare"] = stats
    return section


def _backbone_section(cfg: BenchConfig, config, manifest, work: Path, threads: int) -> dict[str, Any]:
    from cavnet.bench.models import BackboneJob, measure_backbones

    job = BackboneJob(config, cfg.device, max(1, (os.cpu_count() or 1) // cfg.workers), cfg.batch_clips,
                      max(2, cfg.videos // cfg.workers), cfg.repeats, _pass_seconds(cfg), manifest.rows[0])
    return measure_backbones(job, cfg.workers)


def _extract_section(cfg: BenchConfig, config, manifest, work: Path, threads: int) -> dict[str, Any]:
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.bench.extract import measure_extract, shard_size

    opts = RunOptions(shard_size=shard_size(cfg.videos, cfg.workers), workers=cfg.workers,
                      decode_workers=cfg.decode_workers, device=cfg.device, batch_clips=cfg.batch_clips)
    return measure_extract(manifest, config, opts, work / "extract", cfg.repeats, once=not cfg.small)


def _store_section(cfg: BenchConfig, config, manifest, work: Path, threads: int) -> dict[str, Any]:
    from cavnet.extract.backbones import feature_dim
    from cavnet.extract.store.writer import StoreDims
    from cavnet.bench.corpus import make_store
    from cavnet.bench.models import measure_store

    dims = StoreDims(10, 10, feature_dim(config, "visual"), feature_dim(config, "audio"))
    t0 = time.perf_counter()
    path = make_store(work / "store.h5", config, dims, cfg.store_rows)
    return {"dims": asdict(dims), "write_s": time.perf_counter() - t0,
            **measure_store(str(path), cfg.device, cfg.fuse_batch, cfg.repeats, os.cpu_count() or 1,
                            _pass_seconds(cfg))}


_SECTIONS = {"decode": _decode_section, "backbone": _backbone_section, "extract": _extract_section,
             "store": _store_section}


def _ratio(section: Any, a: str, b: str) -> float:
    """The median videos/s of variant ``a`` over that of ``b`` in a decode section."""
    return _median(section, a, "videos_per_s") / _median(section, b, "videos_per_s")


def _median(section: dict[str, Any] | None, *keys: str) -> float:
    node: Any = section
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return math.nan
        node = node[k]
    return float(node["median"]) if isinstance(node, dict) else float(node)


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The done-when ratios of the issue: value, target, met (None when not measured).

    The extract ratio compares the steady extract rate with the decode-only and backbone-only rates
    measured on the same Dask workers in the same repeats (falling back to the decode and backbone
    sections when the extract section has none)."""
    decode, backbone, extract, store = (report.get(k) for k in SECTIONS)
    d = _median(extract, "steady", "decode_videos_per_s")
    b = _median(extract, "steady", "backbone_videos_per_s")
    if not (math.isfinite(d) and math.isfinite(b)):
        d, b = _median(decode, "cavnet+logmel", "videos_per_s"), _median(backbone, "pipeline", "videos_per_s")
    cuda = report["settings"]["device"] == "cuda"
    expected = min(d, b) if cuda else 1.0 / (1.0 / d + 1.0 / b)
    if extract is not None:
        extract["expected_videos_per_s"] = expected
        extract["expected_formula"] = "min(decode, backbone)" if cuda else "1/(1/decode + 1/backbone)"
    values = {
        "decode cavnet/pyav-plain": _ratio(decode, "cavnet", "pyav-plain"),
        "decode cavnet/torchcodec": _ratio(decode, "cavnet", "torchcodec"),
        "decode prepared/cavnet": _ratio(decode, "prepared", "cavnet"),
        "extract steady/expected": _median(extract, "steady", "videos_per_s") / expected,
        "fuse-train store/memory": (store or {}).get("ratios", {}).get("train store/memory", math.nan),
        "fuse-train device/memory": (store or {}).get("ratios", {}).get("train device/memory", math.nan),
    }
    out = {k: {"value": v, "target": TARGETS[k], "met": (v >= TARGETS[k]) if math.isfinite(v) else None}
           for k, v in values.items()}
    out["cavnet --help seconds"] = {"value": report.get("help_s", math.nan), "target": 0.5,
                                    "met": report.get("help_s", math.inf) < 0.5}
    return out


def write_json(report: dict[str, Any], path: Path) -> None:
    """The report as JSON at ``path``, written whole or not at all."""
    from cavnet.extract.files.outputs import write_text

    write_text(path, json.dumps(report, indent=1, default=str), "--json")
