import os
import subprocess
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


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    """Tiny random Hugging Face folders (``tests/hf_tiny.py``: clip, videomae, ast, clap, fused_clap and the
    broken missing_key / no_processor / wrong_architecture) and a 12-video corpus (``corpus``: its CSV)."""
    import hf_tiny as tiny

    root = tmp_path_factory.mktemp("hf")
    folders = {name: getattr(tiny, f"write_{name}")(root / name)
               for name in ("clip", "videomae", "ast", "clap", "fused_clap")}
    folders.update(tiny.broken_copies(folders["clip"], folders["videomae"], root))
    folders["corpus"] = tiny.write_corpus(root / "corpus")
    return folders


@pytest.fixture(scope="module")
def listener():
    """A local port that counts the connections made to it (sandbox_media.Listener)."""
    from sandbox_media import Listener

    server = Listener()
    yield server
    server.close()


@pytest.fixture
def mount(tmp_path):
    """``mount(options)``: a tmpfs of those options at tmp_path/mntN (root only; skipped where mounting is not
    allowed), unmounted after the test."""
    made = []

    def make(options: str) -> Path:
        point = tmp_path / f"mnt{len(made)}"
        point.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        made.append(point)
        return point

    yield make
    for point in made:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)
