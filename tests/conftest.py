import os
import sys
from pathlib import Path

import pytest

# Test helpers (store_factory, media) are imported by name from this folder.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One memory layout for the backbones, not the fastest of two timed on every extraction worker's start:
# the same layout in every run of a test, and seconds saved per extraction (the bench times the layouts).
os.environ.setdefault("CAVNET_LAYOUT", "contiguous")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a shared 2-core machine two OpenMP threads wait on each other (10-50x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_cluster():
    """One local Dask worker (and its nanny, which restarts it when it dies), configured as extract's own."""
    import dask
    from distributed import Client, LocalCluster

    from cavnet.pipelines.extract.cluster import CLUSTER_CONFIG

    with dask.config.set(CLUSTER_CONFIG), LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0") as local:
        with Client(local) as client:
            yield client
