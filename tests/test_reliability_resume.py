"""fuse-train SIGKILLed and resumed: the same metrics and weights as a run that was never interrupted.

Two real kills of ``cavnet fuse-train`` in a subprocess, at points a test can name: in the middle of an
epoch (at a global optimiser step), and between logging an epoch's metrics and checkpointing it (so the
resumed run redoes that epoch and must not log it twice). The patch only decides *when* the process
SIGKILLs itself; the training code runs unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from store_factory import make_store

KILLER = r"""
import os, signal, sys
import cavnet.fuse.run.fusion as ft
from cavnet.cli import main
from cavnet.fuse.run.folder import RunFolder

when, at = sys.argv[1], int(sys.argv[2])
train_one_epoch, save = ft.train_one_epoch, RunFolder.save

def killing_train_one_epoch(model, loss_fn, optimizer, scheduler, batches, *args, **kwargs):
    def guarded():
        for batch in batches:
            if when == "step" and scheduler.last_epoch == at:  # optimiser steps taken so far
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch
    return train_one_epoch(model, loss_fn, optimizer, scheduler, guarded(), *args, **kwargs)

def killing_save(folder, name, ckpt):
    if when == "checkpoint" and name == "last.pt" and ckpt.state.epoch == at:
        os.kill(os.getpid(), signal.SIGKILL)
    save(folder, name, ckpt)

ft.train_one_epoch, RunFolder.save = killing_train_one_epoch, killing_save
main(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "s.h5"
    make_store(path, videos=48, classes=4, no_audio_every=5)  # 32 train videos: 4 steps of 8 per epoch
    return path


def _args(store: Path, out: Path) -> list[str]:
    return ["fuse-train", "--store", str(store), "--out", str(out), "--epochs", "3", "--batch-size", "8",
            "--d-model", "32", "--seed", "5", "--device", "cpu", "--no-progress"]


def _fuse_train(args: list[str], kill: str = "never", at: int = 0) -> subprocess.CompletedProcess:
    """Every run in a fresh process alike (the test process's torch threads may differ), killed or not."""
    return subprocess.run([sys.executable, "-c", KILLER, kill, str(at), *args], capture_output=True, text=True,
                          timeout=300)


def _killed(when: str, at: int, args: list[str]) -> None:
    r = _fuse_train(args, when, at)
    assert r.returncode == -9, r.stdout + r.stderr


def _metrics(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k != "seconds"} for x in lines]


def _epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


@pytest.mark.slow
def test_fuse_train_killed_twice_resumes_to_the_uninterrupted_result(store, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    r = _fuse_train(_args(store, full))
    assert r.returncode == 0, r.stdout + r.stderr

    _killed("step", 6, _args(store, cut))  # in the middle of epoch 2
    assert _epoch(cut / "last.pt") == 1 and [x["epoch"] for x in _metrics(cut)] == [1]

    _killed("checkpoint", 3, _args(store, cut) + ["--resume"])  # epoch 3 logged, not checkpointed
    assert _epoch(cut / "last.pt") == 2 and [x["epoch"] for x in _metrics(cut)] == [1, 2, 3]

    r = _fuse_train(_args(store, cut) + ["--resume"])
    assert r.returncode == 0 and f"resuming {cut} at epoch 3" in r.stdout, r.stdout + r.stderr
    assert _metrics(cut) == _metrics(full) and [x["epoch"] for x in _metrics(cut)] == [1, 2, 3]
    for name in ("last.pt", "best.pt"):
        a, b = (torch.load(run / name, map_location="cpu", weights_only=True) for run in (full, cut))
        assert a["epoch"] == b["epoch"] and a["best"].pop("seconds") > 0 and b["best"].pop("seconds") > 0
        assert a["best"] == b["best"]
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), (name, key)
    assert not list(cut.glob("*.tmp"))
