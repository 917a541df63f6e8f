"""Decode figures of ``cavnet bench``: cavnet's decode path against plain PyAV loops and the ffmpeg CLI.

Every variant decodes the same files in the same number of processes with the same FFmpeg thread count:

- ``cavnet``: :func:`cavnet.extract.media.decode.decode_video` (clips resized and cropped, 16 kHz mono audio);
- ``cavnet+logmel``: what an extract worker does per video (decode, then the log-mel examples);
- ``pyav-plain`` (the reference): a plain PyAV loop over every video and audio frame of the file, each
  converted to an array (RGB24 at the stored size for video), as video loaders commonly do;
- ``pyav-decode-only``: the same loop without any conversion: FFmpeg's decoding alone, the floor;
- ``ffmpeg-cli``: ``ffmpeg -threads T -i FILE -map 0 -f null -``, when ``ffmpeg`` is on the PATH (one
  process per file, start-up included; its FFmpeg build may differ from PyAV's);
- ``torchcodec``: the same clips and audio as ``cavnet`` through ``--decoder torchcodec`` on the CPU
  (:mod:`cavnet.extract.media.tcdecode`), when the extra is installed;
- ``torchcodec-nvdec``: the same on the GPU's NVDEC (CUDA only, for a corpus at or above the NVDEC threshold;
  a file NVDEC fails on fails the figure rather than falling back to the CPU);
- ``prepared``: ``cavnet`` on the same corpus after ``cavnet prepare`` (short side 128 for 112-pixel crops).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from cavnet.extract.config import ExtractConfig
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.status import OK
from cavnet.bench.timing import Sync, for_at_least, interleaved, rates, run_ranks, split, summary

VARIANTS = ("cavnet", "cavnet+logmel", "pyav-plain", "pyav-decode-only", "ffmpeg-cli", "torchcodec", "torchcodec-nvdec",
            "prepared")
REFERENCE = "pyav-plain"


@dataclass(frozen=True)
class DecodeJob:
    rows: tuple[ManifestRow, ...]
    config: ExtractConfig
    threads: int
    repeats: int
    ffmpeg: str | None
    seconds: float  # a timed pass loops over the files until this long
    variants: tuple[str, ...] = VARIANTS[:5]
    prepared: dict[str, str] | None = None  # video id -> its prepared copy


def _pyav_loop(path: str, threads: int, convert: bool) -> int:
    """Decode every frame of every video and audio stream of ``path``; returns the video frame count."""
    import av

    count = 0
    with av.open(path) as container:
        video = container.streams.video[0]
        video.thread_type, video.thread_count = "AUTO", threads
        for frame in container.decode(*container.streams.video[:1], *container.streams.audio[:1]):
            if isinstance(frame, av.VideoFrame):
                count += 1
                if convert:
                    frame.to_ndarray(format="rgb24")
            elif convert:
                frame.to_ndarray()
    return count


def _ffmpeg(binary: str, path: str, threads: int) -> None:
    subprocess.run([binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", str(threads),
                    "-i", path, "-map", "0", "-f", "null", "-"], check=True, stdout=subprocess.DEVNULL)


def _work(variant: str, job: DecodeJob) -> Callable[[str, ManifestRow], Any]:
    from cavnet.extract.media.decode import decode_video
    from cavnet.extract.embed import decode_item

    c, t, segments = job.config, job.threads, job.config.audio_sampling.segments
    if variant.startswith("torchcodec"):
        from cavnet.extract.media.tcdecode import decode_video_torchcodec

        device = "cuda" if variant == "torchcodec-nvdec" else "cpu"
        return lambda p, r: _checked(decode_video_torchcodec(p, c.sampling, c.logmel, segments, t, device,
                                                             fallback=device == "cpu"))
    return {
        "cavnet": lambda p, r: decode_video(p, c.sampling, c.logmel, segments, t),
        "cavnet+logmel": lambda p, r: decode_item(r, c, t),
        "pyav-plain": lambda p, r: _pyav_loop(p, t, True),
        "pyav-decode-only": lambda p, r: _pyav_loop(p, t, False),
        "ffmpeg-cli": lambda p, r: _ffmpeg(job.ffmpeg or "ffmpeg", p, t),
        "prepared": lambda p, r: _checked(decode_video((job.prepared or {})[r.video_id], c.sampling, c.logmel,
                                                       segments, t)),
    }[variant]


def _checked(decoded: Any) -> Any:
    """A decode the figure may count: the corpus is sound, so anything but ``ok`` is a failure to report."""
    if decoded.status != OK:
        raise RuntimeError(f"decode gave {decoded.status}: {decoded.error}")
    return decoded


def _decode_rank(job: DecodeJob, sync: Sync) -> dict[str, list]:
    """One rank: every variant over this rank's share of the files, passes of at least ``job.seconds``,
    repeats interleaved (one file of warm-up per variant first)."""
    import torch

    torch.set_num_threads(job.threads)  # the log-mel front end, as in a worker with this share of the cores
    mine = split(list(job.rows), sync.ranks, sync.rank)
    works = {}
    for variant in job.variants:
        fn = _work(variant, job)
        fn(mine[0].path, mine[0])  # warm-up: imports, scaler and codec set-up

        def one_pass(fn: Callable = fn) -> float:
            for row in mine:
                fn(row.path, row)
            return len(mine)

        works[variant] = for_at_least(job.seconds, one_pass)
    return interleaved(works, sync, job.repeats)


def frames_per_video(rows: tuple[ManifestRow, ...]) -> float:
    """Mean video frame count of the files (container headers)."""
    import av

    counts = []
    for row in rows:
        with av.open(row.path) as container:
            s = container.streams.video[0]
            counts.append(s.frames or round(float(s.duration * s.time_base) * float(s.average_rate)))
    return sum(counts) / max(1, len(counts))


def _warm_page_cache(rows: tuple[ManifestRow, ...]) -> None:
    for row in rows:
        with open(row.path, "rb") as f:
            while f.read(1 << 22):
                pass


def ffmpeg_version(binary: str | None) -> str:
    if not binary:
        return ""
    out = subprocess.run([binary, "-version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else ""


def _variants(rows: tuple[ManifestRow, ...], ffmpeg: str | None, device: str,
              prepared: dict[str, str] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """The variants this machine can run, and why the others are left out."""
    from cavnet.extract.media import tcsetup

    chosen, left_out = list(VARIANTS[:4]), {}
    if ffmpeg:
        chosen.append("ffmpeg-cli")
    try:
        tcsetup.load()
    except tcsetup.TorchcodecUnavailable as exc:
        left_out["torchcodec"] = str(exc)
    else:
        chosen.append("torchcodec")
        if device == "cuda":
            import av

            from cavnet.extract.media.tcdecode import nvdec_wanted

            with av.open(rows[0].path) as container:
                v = container.streams.video[0]
                wanted = nvdec_wanted(v.codec_context.name, v.width, v.height, "cuda")
            if wanted:
                chosen.append("torchcodec-nvdec")
            else:
                left_out["torchcodec-nvdec"] = f"the corpus ({v.width}x{v.height}) is below the NVDEC threshold"
    if prepared:
        chosen.append("prepared")
    return tuple(chosen), left_out


def measure_decode(rows: tuple[ManifestRow, ...], config: ExtractConfig, processes: int, threads: int,
                   repeats: int, seconds: float = 1.0, prepared: dict[str, str] | None = None,
                   device: str = "cpu") -> dict[str, Any]:
    """Videos/s and frames/s of every variant; ratios of cavnet to each of the others. ``prepared``: video
    id -> its copy after ``cavnet prepare`` (the ``prepared`` variant)."""
    binary = shutil.which("ffmpeg")
    _warm_page_cache(rows)
    if prepared:
        _warm_page_cache(tuple(dataclasses.replace(r, path=prepared[r.video_id]) for r in rows))
    variants, left_out = _variants(tuple(rows), binary, device, prepared)
    job = DecodeJob(tuple(rows), config, threads, repeats, binary, seconds, variants, prepared)
    per_rank = run_ranks(_decode_rank, job, processes, "decode")
    frames = frames_per_video(rows)
    section: dict[str, Any] = {"processes": processes, "ffmpeg_threads": threads, "frames_per_video": frames,
                               "reference": REFERENCE, "ffmpeg_cli": ffmpeg_version(binary) or "not installed",
                               "left_out": left_out}
    for variant in per_rank[0]:
        videos = summary(rates([r[variant] for r in per_rank]))
        section[variant] = {"videos_per_s": videos, "frames_per_s": videos["median"] * frames}
    cav = section["cavnet"]["videos_per_s"]["median"]
    section["ratios"] = {f"cavnet/{v}": cav / section[v]["videos_per_s"]["median"]
                         for v in per_rank[0] if v != "cavnet"}
    return section
