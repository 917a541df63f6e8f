"""Processes killed and disks filled mid-run: nothing lost, nothing doubled, the rerun finishes the job.

Faults come from the hooks of ``cavnet.extract.faults``: a hang that holds one shard between its tmp
write and its rename (so the client can be SIGKILLed at a known point, with a real stray tmp file), a
SIGKILL of the worker the first time it opens one video, and ENOSPC when one named HDF5 file is
committed (the real error's type and errno, simulated). The in-process runs share one warm local
cluster (``--scheduler``), armed through ``client.run``; the killed client starts its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import psutil
import pytest
from distributed import Client

import media
from cavnet.errors import CavnetError
from cavnet.extract import faults
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.store.writer import shard_statuses, stray_tmp_files
from cavnet.extract.store.check import check_store
from cavnet.pipelines.extract.run import run_extract
from cavnet.extract.backbones.pretrained import extract_config
from cavnet.extract.datasets import load_manifest

VIDEOS = [f"v{i}" for i in range(6)]
CONFIG = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default", "a video of a person {label}",
                        clips=2, segments=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six valid 1 s videos and their CSV manifest."""
    root = tmp_path_factory.mktemp("corpus")
    lines = ["path,label,split"]
    for i, name in enumerate(VIDEOS):
        media.make_video(root / f"{name}.mp4", seconds=1.0, size=(32, 24), colour=(40 * i, 90, 90))
        lines.append(f"{root / name}.mp4,{'ab'[i % 2]},train")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def cluster(local_cluster):
    """The shared local worker; the faults armed by a test are disarmed at the end."""
    yield local_cluster
    local_cluster.run(faults.arm, {name: None for name in FAULTS})


FAULTS = ("CAVNET_FAULT_CRASH_ON", "CAVNET_FAULT_ONCE", "CAVNET_FAULT_DISK_FULL")


def _extract(corpus: Path, out: Path, cluster: Client, shard_size: int, said: list[str] | None = None):
    manifest = load_manifest("csv", None, corpus)
    opts = RunOptions(shard_size=shard_size, scheduler=cluster.scheduler.address, device="cpu")
    return run_extract(manifest, CONFIG, opts, out, echo=(said if said is not None else []).append, progress=False)


def _assert_complete(out: Path) -> None:
    """The store holds every video exactly once, in manifest order; nothing is left beside it."""
    with h5py.File(out, "r") as f:
        assert list(f["videos/id"].asstr()[()]) == VIDEOS
        assert list(f["videos/status"].asstr()[()]) == ["ok"] * len(VIDEOS)
    assert not out.with_name(out.name + ".shards").exists() and stray_tmp_files(out) == []
    assert check_store(out).problems == []


def _wait_for(predicate, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"extract ended or stalled before the fault point: {proc.communicate()[0]}")
        time.sleep(0.1)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.slow
def test_client_sigkilled_mid_run_then_rerun(corpus, cluster, tmp_path):
    out, shard_dir = tmp_path / "store.h5", tmp_path / "store.h5.shards"
    env = {**os.environ, "CAVNET_FAULT_HANG_ON": "shard-00003.h5", "CAVNET_FAULT_HANG_SECONDS": "300"}
    cmd = [sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest", str(corpus),
           "--out", str(out), "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--clips", "2",
           "--segments", "2", "--workers", "1", "--shard-size", "1", "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    family: list[psutil.Process] = []
    try:
        _wait_for(lambda: any(shard_dir.glob("shard-00003.h5.*.tmp")), proc)
        family = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        _, alive = psutil.wait_procs(family, timeout=30)
        assert _alive(alive) == []  # the Dask workers die with their client: no orphan keeps writing
    finally:
        for p in _alive(family):
            p.kill()
    assert sorted(p.name for p in shard_dir.glob("shard-*.h5")) == [f"shard-{i:05d}.h5" for i in range(3)]
    assert len(list(shard_dir.glob("*.tmp"))) == 1 and not out.exists()
    summary = _extract(corpus, out, cluster, shard_size=1)
    assert (summary.shards_run, summary.shards_skipped, summary.counts) == (3, 3, {"ok": 6})
    _assert_complete(out)
    assert _extract(corpus, out, cluster, shard_size=1).already_done


@pytest.mark.slow
def test_worker_killed_mid_shard_the_shard_is_redone(corpus, cluster, tmp_path):
    out, fired = tmp_path / "store.h5", tmp_path / "fired"
    # the second video of shard 1 SIGKILLs its worker, once (the nanny starts a clean worker)
    cluster.run(faults.arm, {"CAVNET_FAULT_CRASH_ON": "v3.mp4", "CAVNET_FAULT_ONCE": str(fired)})
    said: list[str] = []
    summary = _extract(corpus, out, cluster, shard_size=2, said=said)
    assert fired.exists()  # the worker really was killed
    assert [line for line in said if "worker lost" in line] == [
        "shard 1: worker lost; redoing it with each file in a process of its own"]
    assert (summary.shards_run, summary.counts) == (3, {"ok": 6})
    _assert_complete(out)


def test_disk_full_stops_the_run_and_the_rerun_completes(corpus, cluster, tmp_path, monkeypatch):
    out, shard_dir = tmp_path / "store.h5", tmp_path / "store.h5.shards"
    cluster.run(faults.arm, {"CAVNET_FAULT_DISK_FULL": "shard-00001.h5"})  # shards are written by the worker
    with pytest.raises(CavnetError) as failed:
        _extract(corpus, out, cluster, shard_size=2)
    assert str(failed.value).startswith(
        f"shard 1: disk full writing {shard_dir / 'shard-00001.h5'} (OSError: [Errno 28] No space left on device")
    assert not out.exists() and not (shard_dir / "shard-00001.h5").exists()
    assert not list(shard_dir.glob("shard-00001.h5*"))  # its tmp file was removed
    rows = [VIDEOS[i:i + 2] for i in range(0, 6, 2)]
    for shard in shard_dir.glob("shard-*.h5"):  # whatever was committed is whole
        k = int(shard.stem.split("-")[1])
        assert shard_statuses(shard, 2 * k, rows[k]) == ["ok", "ok"]

    cluster.run(faults.arm, {"CAVNET_FAULT_DISK_FULL": None})
    monkeypatch.setenv("CAVNET_FAULT_DISK_FULL", "store.h5")  # full again while the client consolidates
    with pytest.raises(CavnetError) as failed:
        _extract(corpus, out, cluster, shard_size=2)
    assert str(failed.value) == (f"writing {out} failed ([Errno 28] No space left on device: '{out}'); the shards "
                                 f"in {shard_dir} are kept: fix the cause and rerun the same command")
    assert not out.exists() and stray_tmp_files(out) == []
    assert sorted(p.name for p in shard_dir.glob("shard-*.h5")) == [f"shard-{i:05d}.h5" for i in range(3)]

    monkeypatch.delenv("CAVNET_FAULT_DISK_FULL")
    summary = _extract(corpus, out, cluster, shard_size=2)
    assert (summary.shards_run, summary.shards_skipped, summary.counts) == (0, 3, {"ok": 6})
    _assert_complete(out)


def test_a_shard_folder_of_another_configuration_is_refused(corpus, tmp_path):
    from cavnet.pipelines.extract.run import _plan

    manifest, shard_dir = load_manifest("csv", None, corpus), tmp_path / "store.h5.shards"
    first = _plan(shard_dir, CONFIG, manifest, 4)
    assert _plan(shard_dir, CONFIG, manifest, 2) == first  # the recorded cut wins over a new --shard-size
    other = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default", "a video of a person {label}",
                           clips=3, segments=2)
    with pytest.raises(CavnetError) as refused:
        _plan(shard_dir, other, manifest, 4)
    assert str(refused.value) == (f"{shard_dir} holds shards of another configuration (sampling.clips: recorded 2, "
                                  "asked 3); use another --out or delete it")
