"""A Dask client for stage one: an existing scheduler, or a local cluster sized to the machine."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from cavnet.errors import CavnetError


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - a broken CUDA install means CPU workers
        return 0


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int, device: str, echo=print) -> Iterator["object"]:
    """Yield a ``distributed.Client``; a local cluster is started (and closed) when no scheduler is named.

    Workers must be allowed children (decode processes): ``distributed.worker.daemon`` is set to False
    here for local clusters; a remote cluster needs ``DASK_DISTRIBUTED__WORKER__DAEMON=False`` itself.
    """
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.worker.daemon": False,
                     "distributed.scheduler.allowed-failures": 2,
                     "distributed.admin.tick.limit": "60s"})
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise CavnetError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            echo(f"dask: connected to {scheduler} ({len(client.scheduler_info()['workers'])} workers)")
            yield client
        return
    gpus = _gpu_count() if device in ("auto", "cuda") else 0
    cluster = _local_cuda_cluster(gpus) if gpus else None
    if cluster is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        os.environ.setdefault("CAVNET_TORCH_THREADS", str(threads))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        link = getattr(client, "dashboard_link", None)
        kind = f"{gpus} GPU workers" if gpus else f"{workers} CPU workers"
        echo(f"dask: local cluster, {kind}" + (f", dashboard {link}" if link else ""))
        yield client


def _local_cuda_cluster(gpus: int):
    """One worker per GPU through dask-cuda when it is installed; else a plain cluster pinned per GPU."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        from distributed import LocalCluster, Nanny, SpecCluster, Scheduler
        workers = {i: {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i)}}}
                   for i in range(gpus)}
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})
    return LocalCUDACluster(threads_per_worker=1, dashboard_address=":0")
