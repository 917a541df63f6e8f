"""Timing for ``cavnet bench``: work run in N synchronised processes, medians of repeats, machine facts.

A measurement runs the same task in ``ranks`` spawned processes (the worker count of the pipeline it
stands for). Each rank sets itself up (imports, models, data), runs its warm-up, then every repeat starts
at a barrier; a repeat's throughput is the items all ranks did over the span from the earliest start to
the latest end (``time.perf_counter`` is one monotonic clock for the whole machine on Linux and macOS).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import traceback
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable

from cavnet.errors import CavnetError

Span = tuple[float, float, float]  # start, end, items
RANK_TIMEOUT_S = 3600.0


class BenchError(CavnetError):
    """A measurement that could not be made; the message names the section."""


@dataclass(frozen=True)
class Sync:
    """What a rank gets: its number, the rank count, and ``wait()`` (a barrier across ranks)."""

    rank: int
    ranks: int
    barrier: Any

    def wait(self) -> None:
        if self.barrier is not None:
            self.barrier.wait()


LOCAL = Sync(0, 1, None)  # measuring in this process only


def timed_once(work: Callable[[], float], sync: Sync) -> Span:
    """One timed call of ``work`` (it returns its item count), started at the barrier."""
    sync.wait()
    t0 = time.perf_counter()
    items = work()
    return t0, time.perf_counter(), float(items)


def timed(work: Callable[[], float], sync: Sync, repeats: int, warmup: int = 1) -> list[Span]:
    """``warmup`` untimed calls of ``work``, then ``repeats`` timed ones, each started at the barrier."""
    for _ in range(warmup):
        work()
    return [timed_once(work, sync) for _ in range(repeats)]


def interleaved(works: dict[str, Callable[[], float]], sync: Sync, repeats: int) -> dict[str, list[Span]]:
    """Timed repeats of several variants, interleaved (repeat r runs every variant, in an order rotated by
    r), so that a slow spell of a shared machine does not land on one variant only. No warm-up here."""
    names = list(works)
    spans: dict[str, list[Span]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            spans[n].append(timed_once(works[n], sync))
    return spans


def for_at_least(seconds: float, step: Callable[[], float]) -> Callable[[], float]:
    """A work function that calls ``step`` (returning its item count) until ``seconds`` have passed."""
    def work() -> float:
        t0, items = time.perf_counter(), 0.0
        while True:
            items += step()
            if time.perf_counter() - t0 >= seconds:
                return items
    return work


def _rank_main(task: Callable, payload: Any, sync: Sync, queue: Any) -> None:
    try:
        queue.put((sync.rank, "result", task(payload, sync)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent as text
        sync.barrier.abort()
        queue.put((sync.rank, "error", traceback.format_exc(limit=6)))


def run_ranks(task: Callable[[Any, Sync], Any], payload: Any, ranks: int, what: str) -> list[Any]:
    """``task(payload, sync)`` in ``ranks`` spawned processes; their results in rank order.

    ``task`` must be a module-level function (it is pickled by reference). A rank that fails aborts the
    barrier of the others; the first traceback is raised as :class:`BenchError` naming ``what``.
    """
    ctx = get_context("spawn")
    barrier, queue = ctx.Barrier(ranks, timeout=RANK_TIMEOUT_S), ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(task, payload, Sync(r, ranks, barrier), queue), daemon=False)
             for r in range(ranks)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in range(ranks):
            rank, status, value = queue.get(timeout=RANK_TIMEOUT_S)
            (results.__setitem__(rank, value) if status == "result" else errors.append(value))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    real = [e for e in errors if "BrokenBarrierError" not in e] or errors
    if real:
        raise BenchError(f"{what}: a measuring process failed:\n{real[0]}")
    return [results[r] for r in range(ranks)]


def rates(per_rank: list[list[Span]]) -> list[float]:
    """Items per second of each repeat, over all ranks: sum(items) / (max end - min start)."""
    out = []
    for spans in zip(*per_rank):
        wall = max(s[1] for s in spans) - min(s[0] for s in spans)
        out.append(sum(s[2] for s in spans) / wall if wall > 0 else math.nan)
    return out


def summary(values: list[float]) -> dict[str, Any]:
    """``{"median", "min", "max", "repeats"}`` of per-repeat figures."""
    clean = [v for v in values if math.isfinite(v)]
    if not clean:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "repeats": values}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "repeats": values}


def split(items: list, ranks: int, rank: int) -> list:
    """Rank ``rank``'s share of ``items`` (round robin)."""
    return items[rank::ranks]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Host, CPU, core count, memory, GPU (no CUDA initialisation when none is asked for)."""
    info: dict[str, Any] = {"host": platform.node(), "os": platform.platform(), "cpu": cpu_name(),
                            "cores": os.cpu_count() or 1}
    try:
        import psutil
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    return info


def gpu_info() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {}
    p = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
            "gpu_memory_gib": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version()}
