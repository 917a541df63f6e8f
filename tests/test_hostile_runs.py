"""Real extract runs under hostile conditions (slow tier): two runs on one --out, and Ctrl-C.

The first run is held between a shard's tmp write and its rename by ``CAVNET_FAULT_HANG_ON``, so the
second run (or the Ctrl-C) meets it at a known point with a live shard ``.tmp`` file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

import media
from hostile import one_line_error
from cavnet.extract.store.check import check_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    lines = ["path,label,split"]
    for i in range(3):
        media.make_video(root / f"v{i}.mp4", seconds=1.0, size=(32, 24), colour=(60 * i, 90, 90))
        lines.append(f"{root / f'v{i}.mp4'},{'ab'[i % 2]},train")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def _cmd(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest", str(corpus),
            "--out", str(out), "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--clips", "2",
            "--segments", "2", "--workers", "1", "--shard-size", "1", "--device", "cpu", "--no-progress", *extra]


def _start(corpus: Path, out: Path, hang_seconds: str, *extra: str, until: Path | None = None) -> subprocess.Popen:
    """extract, hanging before it commits shard 1: for ``hang_seconds``, or until the file ``until`` exists."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "CAVNET_FAULT_HANG_ON": "shard-00001.h5",
           "CAVNET_FAULT_HANG_SECONDS": hang_seconds, **({"CAVNET_FAULT_HANG_UNTIL": str(until)} if until else {})}
    return subprocess.Popen(_cmd(corpus, out, *extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _wait_for_live_tmp(proc: subprocess.Popen, shard_dir: Path) -> Path:
    deadline = time.monotonic() + 900
    while not list(shard_dir.glob("shard-00001.h5.*.tmp")):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"extract ended or stalled before the fault point: {proc.communicate()}")
        time.sleep(0.1)
    return next(shard_dir.glob("shard-00001.h5.*.tmp"))


def test_two_extracts_on_one_out_the_second_is_refused_the_first_finishes(corpus, tmp_path):
    out, release = tmp_path / "store.h5", tmp_path / "release"
    first = _start(corpus, out, "900", until=release)  # holds shard 1 until the second run was refused
    live = _wait_for_live_tmp(first, tmp_path / "store.h5.shards")
    try:
        second = subprocess.run(_cmd(corpus, out), capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        one_line_error(second, f"store {out} is in use by pid {first.pid}")
        assert live.exists()  # the refused run did not delete the first one's live tmp file as a "stray"
    finally:
        release.touch()
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert check_store(out).problems == []
    with h5py.File(out) as f:
        assert list(f["videos/status"].asstr()[()]) == ["ok"] * 3


def test_ctrl_c_is_one_line_without_worker_tracebacks(corpus, tmp_path):
    out = tmp_path / "store.h5"
    # held at the fault point until a file that never appears: only the interrupt can end the run
    proc = _start(corpus, out, "1800", "--decode-workers", "1", until=tmp_path / "never")
    _wait_for_live_tmp(proc, tmp_path / "store.h5.shards")
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    try:
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Python's resource tracker may still note the semaphores of the killed decode processes (a warning)
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")
             and "resource_tracker" not in ln]
    assert (proc.returncode, lines) == (130, ["cavnet: aborted"]), stderr
    assert "Traceback" not in stderr
