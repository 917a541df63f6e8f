"""Stream tasks (extract shards, probe chunks) through Dask with a bounded window in flight and a progress bar.

Failures are told apart: a task whose worker *died* (Dask's ``KilledWorker``) is redone with every file
handled in a process of its own, so the one file that kills its process is recorded as ``worker_crash``
and the rest survive; a task that *raised* (a full disk, a bug) stops the run with a one-line error, and
the shards committed so far are kept for the rerun.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
import errno
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cavnet.errors import CavnetError
from cavnet.extract.config import ExtractConfig
from cavnet.extract.status import USABLE
from cavnet.extract.store.fsfault import CAUSES
from cavnet.pipelines.extract.options import RunOptions
from cavnet.pipelines.extract.cluster import dask_client

if TYPE_CHECKING:  # the worker side imports torch: a client that only streams tasks (prepare, probe) need not
    from cavnet.pipelines.extract.worker import ShardResult, ShardSpec

ISOLATED_ATTEMPTS = 2  # a task whose worker died is redone isolated; if that worker dies too, once more
_RERUN = "committed shards are kept: fix the cause and rerun the same command to continue"


def failed_count(counts: dict[str, int]) -> int:
    """Videos whose status leaves no usable features (``short_decode`` is usable: not a failure)."""
    return sum(k for s, k in counts.items() if s not in USABLE)


class ShardFailed(CavnetError):
    """A task failed for a reason other than bad media; the run stops, committed shards stay."""


def _is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "No space left on device" in str(exc)


def _failure(name: str, spec: Any, exc: BaseException) -> ShardFailed:
    """The one-line error for a task (``name`` and ``spec.index``) that could not be completed."""
    from distributed import KilledWorker

    from cavnet.errors import error_message

    where = f"{name} {spec.index}"
    if isinstance(exc, KilledWorker):
        return ShardFailed(f"{where}: its worker died again although every file was handled in a process of "
                           f"its own (out of memory?); {_RERUN}")
    if _is_disk_full(exc):
        return ShardFailed(f"{where}: disk full writing {getattr(spec, 'path', '')} ({error_message(exc)}); "
                           f"{_RERUN}")
    if isinstance(exc, OSError) and exc.errno in CAUSES:
        return ShardFailed(f"{where}: {CAUSES[exc.errno]} writing {exc.filename or getattr(spec, 'path', '')} "
                           f"({error_message(exc)}); {_RERUN}")
    return ShardFailed(f"{where} failed: {error_message(exc)}; {_RERUN}")


def stream_tasks(client: Any, func: Callable[..., Any], specs: Sequence[Any], args: tuple, name: str,
                 on_result: Callable[[Any], None], echo: Callable[[str], None], window: int = 0) -> None:
    """Run ``func(spec, *args)`` for every spec, at most ``window`` in flight; ``on_result(result)`` in
    completion order. ``spec`` is a dataclass with ``index``, ``isolate`` and ``attempt`` fields."""
    from distributed import KilledWorker, as_completed

    window = window or 2 * max(1, len(client.scheduler_info()["workers"]))
    queue, submitted = list(specs), {}

    def submit(spec: Any):
        fut = client.submit(func, spec, *args, pure=False, key=f"cavnet-{name}-{spec.index}-{spec.attempt}")
        submitted[fut.key] = spec
        return fut

    pending = as_completed([submit(queue.pop(0)) for _ in range(min(window, len(queue)))])
    for fut in pending:
        spec = submitted.pop(fut.key)
        if fut.status != "finished":
            exc = fut.exception() if fut.status == "error" else RuntimeError(f"task {fut.status}")
            if isinstance(exc, KilledWorker) and spec.attempt < ISOLATED_ATTEMPTS:
                echo(f"{name} {spec.index}: worker lost; redoing it with each file in a process of its own")
                pending.add(submit(dataclasses.replace(spec, isolate=True, attempt=spec.attempt + 1)))
                continue
            raise _failure(name, spec, exc)
        result = fut.result()
        fut.release()
        on_result(result)
        if queue:
            pending.add(submit(queue.pop(0)))


def run_shards(todo: Sequence[ShardSpec], config: ExtractConfig, opts: RunOptions, total: int,
               skipped: int, echo: Callable[[str], None], progress: bool,
               on_result: Callable[[ShardResult], None] | None = None) -> dict[str, int]:
    """Run every shard of ``todo``; returns the counts by status of the videos it ran.

    ``on_result`` sees each shard's :class:`ShardResult` (the memory benchmark reads worker RSS from it).
    """
    from tqdm import tqdm

    from cavnet.pipelines.extract.worker import run_shard

    counts: Counter[str] = Counter()
    bar = tqdm(total=total, initial=total - sum(len(s.rows) for s in todo), unit="video",
               disable=not progress, dynamic_ncols=True, desc="extract")

    def done(result: ShardResult) -> None:
        counts.update(result.counts)
        if on_result is not None:
            on_result(result)
        bar.update(sum(result.counts.values()))
        bar.set_postfix(failed=failed_count(counts))

    try:
        with dask_client(opts.scheduler, opts.workers, opts.device, echo) as client:
            stream_tasks(client, run_shard, todo, (config.to_json(), opts), "shard", done, echo, opts.window)
    finally:
        bar.close()
    return dict(counts)
