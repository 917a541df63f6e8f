"""``cavnet probe``, wired: ``extract.media.probe`` over every file of a corpus on the Dask cluster (each
file in a process of its own when a chunk's process died), the per-file table and its summary.

The statuses are extract's (docs/store.md), found without a full decode, plus ``worker_crash``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cavnet.errors import CavnetError
from cavnet.extract.files.outputs import Output, RowWriter, check_outputs, csv_line
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.media.probe import ProbeRecord, probe_media
from cavnet.extract.status import WORKER_CRASH
from cavnet.pipelines.extract.options import RunOptions


@dataclass(frozen=True)
class ProbeChunk:
    """Rows probed by one Dask task; ``isolate``: each file in a process of its own."""

    index: int
    rows: tuple[ManifestRow, ...]
    isolate: bool = False
    attempt: int = 0


def _crashed(row: ManifestRow) -> ProbeRecord:
    return ProbeRecord(row.video_id, row.split, row.label, row.path, WORKER_CRASH,
                       "the probing process died on this file")


def probe_chunk(chunk: ProbeChunk) -> tuple[int, list[ProbeRecord]]:
    """A Dask task: the records of ``chunk``'s rows, in order."""
    if chunk.isolate:
        from functools import partial

        from cavnet.extract import faults
        from cavnet.pipelines.extract.worker import isolated_map

        return chunk.index, list(isolated_map(partial(probe_media, armed=faults.armed()), chunk.rows, _crashed))
    return chunk.index, [probe_media(row) for row in chunk.rows]


def probe_records(manifest: Manifest, opts: RunOptions, echo: Callable[[str], None] = print,
                  progress: bool = True,
                  on_records: Callable[[list[ProbeRecord]], None] | None = None) -> list[ProbeRecord]:
    """Probe every row of ``manifest`` on the Dask cluster; records in manifest order. ``on_records``: called
    with the next records in manifest order as soon as the chunks before them are all done."""
    from tqdm import tqdm

    from cavnet.pipelines.extract.cluster import dask_client
    from cavnet.pipelines.extract.tasks import stream_tasks

    rows, size = manifest.rows, max(1, opts.shard_size)
    chunks = [ProbeChunk(i, rows[s:s + size]) for i, s in enumerate(range(0, len(rows), size))]
    parts: dict[int, list[ProbeRecord]] = {}
    given = 0  # the chunks handed to on_records, in order
    with tqdm(total=len(rows), unit="file", desc="probe", disable=not progress, dynamic_ncols=True) as bar:
        def done(result: tuple[int, list[ProbeRecord]]) -> None:
            nonlocal given
            parts[result[0]] = result[1]
            bar.update(len(result[1]))
            while on_records is not None and given in parts:
                on_records(parts[given])
                given += 1

        with dask_client(opts.scheduler, opts.workers, "cpu", echo) as client:
            stream_tasks(client, probe_chunk, chunks, (), "probe chunk", done, echo, opts.window)
    return [record for i in range(len(chunks)) for record in parts[i]]


FIELDS = [f.name for f in dataclasses.fields(ProbeRecord)]


def csv_table(out: Path) -> RowWriter:
    """The per-file table at ``out``, its header written: one line per file, the columns of
    :class:`ProbeRecord`, each row on disk once written (Ctrl-C keeps the rows done)."""
    table = RowWriter(out, "--out")
    table.write(csv_line(FIELDS), row=False)
    return table


def table_rows(records: Sequence[ProbeRecord]) -> str:
    return "".join(csv_line([getattr(r, f) for f in FIELDS]) for r in records)


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
              progress: bool = True, inputs: Sequence[Path] = ()) -> list[ProbeRecord]:
    """Probe, write ``out`` (CSV) when given, echo the summary; returns the records. ``inputs``: the files
    the manifest was read from, which ``out`` may not replace."""
    if out is not None and not out.parent.exists():
        raise CavnetError(f"--out {out}: folder {out.parent} does not exist")
    if out is not None:
        check_outputs([Output(out, "--out")], inputs=[*inputs, *(Path(r.path) for r in manifest.rows)])
    if out is None:
        records = probe_records(manifest, opts, echo, progress)
    else:
        with csv_table(out) as table:
            records = probe_records(manifest, opts, echo, progress, lambda done: table.write(table_rows(done)))
    for line in summary(records):
        echo(line)
    if out is not None:
        echo(f"per-file table: {out}")
    return records
