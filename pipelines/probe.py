"""``cavnet probe``: open every file of a corpus on the Dask cluster, decode at most one video frame, and
record what is there (status, container, codecs, duration, frame rate, resolution, size, audio).

The statuses are extract's (docs/store.md), found without a full decode: ``ok``, ``no_audio``,
``no_video``, ``decode_error``, ``empty_file``, ``missing_file`` and ``worker_crash``. Damage that only a
full decode reveals (``short_decode``, a file truncated after its first frame) shows up in extract only.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cavnet.errors import CavnetError
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.manifest import Manifest, ManifestRow

MAX_PACKETS = 64  # video packets read while looking for the first decodable frame


@dataclass
class ProbeRecord:
    """What probing found in one file; numbers are 0 and strings empty where unknown."""

    video_id: str
    split: str
    label: int
    path: str
    status: str
    error: str = ""
    bytes: int = 0
    container: str = ""
    video_codec: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0
    frames: int = 0
    audio_codec: str = ""
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True)
class ProbeChunk:
    """Rows probed by one Dask task; ``isolate``: each file in a process of its own."""

    index: int
    rows: tuple[ManifestRow, ...]
    isolate: bool = False
    attempt: int = 0


def _streams(container, record: ProbeRecord):
    """Fill the container, video and audio fields; returns the video stream (None: there is none)."""
    from av.stream import Disposition

    record.container = container.format.name
    video = next((s for s in container.streams.video if not s.disposition & Disposition.attached_pic), None)
    audio = container.streams.audio[0] if container.streams.audio else None
    if container.duration:
        record.duration = container.duration / 1_000_000
    if video is not None:
        rate = video.average_rate or video.guessed_rate
        record.video_codec, record.width, record.height = video.codec_context.name, video.width, video.height
        record.fps, record.frames = float(rate) if rate else 0.0, int(video.frames or 0)
        if video.duration and video.time_base:
            record.duration = float(video.duration * video.time_base)
    if audio is not None:
        record.audio_codec, record.sample_rate = audio.codec_context.name, int(audio.rate or 0)
        record.channels = int(audio.codec_context.channels or 0)
    return video


def _first_frame(container, stream) -> str:
    """'' when a frame of ``stream`` decodes from its first packets, else why not."""
    from cavnet.extract.media.decode import error_message

    last = "no video frame decoded"
    try:
        for i, packet in enumerate(container.demux(stream)):
            if i >= MAX_PACKETS:
                break
            try:
                if packet.decode():
                    return ""
            except Exception as exc:  # a damaged packet: try the next one
                last = error_message(exc)
        for _ in stream.codec_context.decode(None):  # frame threading may hold the first frame back
            return ""
    except Exception as exc:  # the demuxer failed
        last = error_message(exc)
    return last


def probe_file(row: ManifestRow, armed: dict[str, str] | None = None) -> ProbeRecord:
    """Probe one file; never raises for bad media (the same status rules as extract's decode).
    ``armed``: the tests' faults, as set in the process that handed the row over (None: this one's)."""
    import av

    from cavnet.extract import faults
    from cavnet.extract.media.decode import error_message

    record = ProbeRecord(row.video_id, row.split, row.label, row.path, "ok")
    faults.before_open(row.path, armed)
    try:
        record.bytes = os.path.getsize(row.path)
    except OSError as exc:
        record.status, record.error = "missing_file", error_message(exc)
        return record
    if record.bytes == 0:
        record.status, record.error = "empty_file", "file is 0 bytes"
        return record
    try:
        with av.open(row.path, metadata_errors="ignore") as container:
            video = _streams(container, record)
            if video is None:
                record.status, record.error = "no_video", "no video stream"
            elif (why := _first_frame(container, video)):
                record.status, record.error = "decode_error", why
            elif not record.audio_codec:
                record.status = "no_audio"
    except Exception as exc:  # av raises many types on open: all are bad media
        record.status, record.error = "decode_error", error_message(exc)
    return record


def _crashed(row: ManifestRow) -> ProbeRecord:
    return ProbeRecord(row.video_id, row.split, row.label, row.path, "worker_crash",
                       "the probing process died on this file")


def probe_chunk(chunk: ProbeChunk) -> tuple[int, list[ProbeRecord]]:
    """A Dask task: the records of ``chunk``'s rows, in order."""
    if chunk.isolate:
        from functools import partial

        from cavnet.extract import faults
        from cavnet.pipelines.extract.worker import isolated_map

        return chunk.index, list(isolated_map(partial(probe_file, armed=faults.armed()), chunk.rows, _crashed))
    return chunk.index, [probe_file(row) for row in chunk.rows]


def probe_records(manifest: Manifest, opts: RunOptions, echo: Callable[[str], None] = print,
                  progress: bool = True) -> list[ProbeRecord]:
    """Probe every row of ``manifest`` on the Dask cluster; records in manifest order."""
    from tqdm import tqdm

    from cavnet.pipelines.extract.cluster import dask_client
    from cavnet.pipelines.extract.tasks import stream_tasks

    rows, size = manifest.rows, max(1, opts.shard_size)
    chunks = [ProbeChunk(i, rows[s:s + size]) for i, s in enumerate(range(0, len(rows), size))]
    parts: dict[int, list[ProbeRecord]] = {}
    with tqdm(total=len(rows), unit="file", desc="probe", disable=not progress, dynamic_ncols=True) as bar:
        def done(result: tuple[int, list[ProbeRecord]]) -> None:
            parts[result[0]] = result[1]
            bar.update(len(result[1]))

        with dask_client(opts.scheduler, opts.workers, "cpu", echo) as client:
            stream_tasks(client, probe_chunk, chunks, (), "probe chunk", done, echo, opts.window)
    return [record for i in range(len(chunks)) for record in parts[i]]


FIELDS = [f.name for f in dataclasses.fields(ProbeRecord)]


def write_csv(records: Sequence[ProbeRecord], out: Path) -> None:
    """One line per file, the columns of :class:`ProbeRecord`."""
    try:
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(dataclasses.asdict(r) for r in records)
    except OSError as exc:
        raise CavnetError(f"cannot write {out}: {exc.strerror or exc}") from None


def _top(counter: Counter, limit: int = 8) -> str:
    items = counter.most_common()
    shown = ", ".join(f"{k} ({v})" for k, v in items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "") if items else "none"


def summary(records: Sequence[ProbeRecord]) -> list[str]:
    """Human-readable lines: counts by status, then what the readable files look like."""
    status = Counter(r.status for r in records)
    video = [r for r in records if r.video_codec]
    lines = [f"{len(records)} files: " + ", ".join(f"{k} {v}" for k, v in status.most_common()),
             f"without audio: {sum(1 for r in video if not r.audio_codec)} of {len(video)} videos"]
    lines.append("resolutions: " + _top(Counter(f"{r.width}x{r.height}" for r in video)))
    lines.append("frame rates: " + _top(Counter(f"{r.fps:g}" for r in video)))
    lines.append("containers: " + _top(Counter(r.container for r in records if r.container)))
    lines.append("video codecs: " + _top(Counter(r.video_codec for r in video)))
    lines.append("audio: " + _top(Counter(f"{r.audio_codec} {r.sample_rate} Hz {r.channels} ch"
                                          for r in records if r.audio_codec)))
    return lines


def run_probe(manifest: Manifest, opts: RunOptions, out: Path | None, echo: Callable[[str], None] = print,
              progress: bool = True) -> list[ProbeRecord]:
    """Probe, write ``out`` (CSV) when given, echo the summary; returns the records."""
    if out is not None and not out.parent.is_dir():
        raise CavnetError(f"--out {out}: folder {out.parent} does not exist")
    records = probe_records(manifest, opts, echo, progress)
    if out is not None:
        write_csv(records, out)
    for line in summary(records):
        echo(line)
    if out is not None:
        echo(f"per-file table: {out}")
    return records
