"""What runs inside a Dask worker for ``cavnet prepare``: a chunk of files, each re-encoded and committed on its
own (an output that exists is reused, so a task that Dask runs twice, or a rerun after a kill, redoes no
finished file). In ``isolate`` mode each file runs in a process of its own, so a file that kills its process
costs only its own row (``worker_crash``), as in extract and probe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

from cavnet.extract import faults
from cavnet.extract.config import PrepareConfig
from cavnet.extract.media.transcode import PrepareResult
from cavnet.extract.status import WORKER_CRASH


@dataclass(frozen=True)
class PrepareItem:
    """One file: the source ``src``, written to ``dst`` (absolute); ``rel``: ``dst`` relative to DST."""

    video_id: str
    src: str
    dst: str
    rel: str


@dataclass(frozen=True)
class PrepareChunk:
    """The files of one Dask task."""

    index: int
    items: tuple[PrepareItem, ...]
    config: PrepareConfig
    isolate: bool = False
    attempt: int = 0


def record(item: PrepareItem, result: PrepareResult, stamp: list[int] | None) -> dict[str, Any]:
    """The journal line of one file."""
    return {"video_id": item.video_id, "source": item.src, "path": item.rel, **dataclasses.asdict(result),
            "stamp": stamp}


def prepare_item(item: PrepareItem, config: PrepareConfig, armed: dict[str, str] | None = None) -> dict[str, Any]:
    """Prepare one file (the tests' fault hook first, with the faults ``armed`` by the handing process)."""
    from cavnet.extract.media.decode import decode_threads
    from cavnet.extract.media.transcode import prepare_file
    from cavnet.pipelines.prepare.layout import source_stamp

    stamp = source_stamp(item.src)
    faults.before_open(item.src, armed)
    return record(item, prepare_file(item.src, item.dst, config, decode_threads()), stamp)


def _crashed(config: PrepareConfig, item: PrepareItem) -> dict[str, Any]:
    from cavnet.pipelines.prepare.layout import source_stamp

    return record(item, PrepareResult(WORKER_CRASH, "the preparing process died on this file"), source_stamp(item.src))


def prepare_chunk(chunk: PrepareChunk) -> tuple[int, list[dict[str, Any]]]:
    """A Dask task: the journal lines of ``chunk``'s files, in order."""
    if chunk.isolate:
        from cavnet.pipelines.extract.worker import isolated_map

        work = partial(prepare_item, config=chunk.config, armed=faults.armed())
        return chunk.index, list(isolated_map(work, chunk.items, partial(_crashed, chunk.config)))
    return chunk.index, [prepare_item(item, chunk.config) for item in chunk.items]
