"""A Dask client for stage one: an existing scheduler, or a local cluster sized to the machine."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from cavnet.errors import CavnetError
from cavnet.extract.device import gpu_count


# A shard task fails at its worker's first death (no blind retry of a file that kills its worker: the client
# redoes the shard with each video in a process of its own), and a worker holds one task per thread, so a
# death blames only the shard it was running. The workers' statistical profiler is off: it samples the
# task thread every 10 ms and keeps an hour of samples, which made a worker's memory grow by about 0.2 MiB
# per shard (bench/worker_memory.py), and costs CPU that decoding needs.
CLUSTER_CONFIG = {"distributed.worker.daemon": False,
                  "distributed.scheduler.allowed-failures": 0,
                  "distributed.scheduler.worker-saturation": 1.0,
                  "distributed.worker.profile.enabled": False,
                  "distributed.admin.tick.limit": "60s"}




def connect_timeout() -> float:
    """Seconds a scheduler has to answer: ``CAVNET_SCHEDULER_TIMEOUT`` (default 20)."""
    return float(os.environ.get("CAVNET_SCHEDULER_TIMEOUT", "20"))

_SCHEMES = ("tcp", "tls", "ucx", "inproc", "ws", "wss")


def scheduler_address(address: str) -> str:
    """``address`` if it is a Dask address (``tcp://host:port``, ``host:port`` ...); refuses anything else."""
    scheme, sep, rest = address.strip().partition("://")
    if not sep:
        scheme, rest = "tcp", address.strip()
    host, colon, port = rest.rpartition(":")
    bad = scheme not in _SCHEMES or (scheme != "inproc" and (not colon or not host or not port.isdigit()
                                                            or not 0 < int(port) < 65536 or "/" in rest))
    if bad or any(c.isspace() or ord(c) < 32 for c in address):
        raise CavnetError(f"--scheduler {address!r} is not a Dask scheduler address (tcp://HOST:PORT)")
    return f"{scheme}://{rest}"


def check_scheduler(address: str, timeout: float | None = None) -> None:
    """Refuse a malformed address at once, and a scheduler that does not complete Dask's handshake and
    answer an ``identity`` call within ``timeout`` seconds (``Client`` alone can wait forever on a port
    that accepts TCP connections but never answers)."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    address = scheduler_address(address)
    timeout = connect_timeout() if timeout is None else timeout

    async def identity() -> None:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            await comm.read()
        finally:
            comm.abort()

    try:
        asyncio.run(asyncio.wait_for(identity(), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        raise CavnetError(f"the Dask scheduler at {address} did not answer within {timeout:.0f} s "
                          "(is it a Dask scheduler?)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CavnetError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int, device: str, echo=print) -> Iterator["object"]:
    """Yield a ``distributed.Client``; a local cluster is started (and closed) when no scheduler is named.

    Workers must be allowed children (decode processes): ``distributed.worker.daemon`` is set to False
    here for local clusters; a remote cluster needs ``DASK_DISTRIBUTED__WORKER__DAEMON=False`` itself, and
    should set the scheduler options of :data:`CLUSTER_CONFIG` too (docs/reliability.md).
    """
    import dask
    from distributed import Client, LocalCluster

    dask.config.set(CLUSTER_CONFIG)
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # the client reports lost workers itself
    if scheduler:
        check_scheduler(scheduler)
        try:
            client = Client(scheduler, timeout=f"{connect_timeout()}s")
        except (OSError, ValueError, TypeError) as exc:
            raise CavnetError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            echo(f"dask: connected to {scheduler} ({len(client.scheduler_info()['workers'])} workers)")
            yield client
        return
    gpus = gpu_count() if device in ("auto", "cuda") else 0
    with _sigint_ignored():
        cluster = _local_cuda_cluster(gpus) if gpus else None
    if cluster is None:
        # each worker's share of the cores, set in the workers only (the client's own torch is left alone)
        threads = os.environ.get("CAVNET_TORCH_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, workers)))
        with _sigint_ignored():  # Ctrl-C: the client stops with one line; workers print no tracebacks
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL,
                                   env={"CAVNET_TORCH_THREADS": threads})
    with cluster, Client(cluster) as client:
        link = getattr(client, "dashboard_link", None)
        kind = f"{gpus} GPU workers" if gpus else f"{workers} CPU workers"
        echo(f"dask: local cluster, {kind}" + (f", dashboard {link}" if link else ""))
        try:
            yield client
        except KeyboardInterrupt:
            _kill_descendants()  # they ignore SIGINT; a task mid-write would keep them for its whole length
            raise


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start processes with SIGINT ignored (an ignored signal stays ignored across fork and exec, and
    Python then installs no KeyboardInterrupt handler): a Ctrl-C in the terminal reaches the whole
    process group, and only the client should act on it; its workers exit with it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _kill_descendants() -> None:
    """SIGKILL every process this one started (the local cluster's nannies, workers, decode processes):
    committed shards are whole, tmp files are removed by the rerun."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):  # the client's own, not the cluster's
                child.kill()
        except psutil.Error:
            continue


def _local_cuda_cluster(gpus: int):
    """One worker per GPU through dask-cuda when it is installed; else a plain cluster pinned per GPU."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        from distributed import Nanny, Scheduler, SpecCluster
        workers = {i: {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
                   for i in range(gpus)}
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})
    return LocalCUDACluster(threads_per_worker=1, dashboard_address=":0")
