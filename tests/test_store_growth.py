"""A store grows: rerunning extract with a superset corpus (a new split, more videos, a new class) extracts
only the new videos, keeps every old row where it was, and ends equal, video for video, to a store
extracted in one go; a kill in the middle of growing loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from distributed import Client

import media
from cavnet.errors import CavnetError
from cavnet.extract.store.check import check_store
from cavnet.pipelines.extract.options import RunOptions
from cavnet.pipelines.extract.run import run_extract
from cavnet.extract.backbones.pretrained import extract_config
from cavnet.extract.datasets import load_manifest

CONFIG = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default", "a video of a person {label}",
                        clips=2, segments=2)
# (id, label, split): the first corpus is the train split of a/b; it grows by a val split, then by two more
# training videos, one of a new class 'c' (sorted first, so the ids of a and b move).
ROWS = [("v0", "b", "train"), ("v1", "d", "train"), ("v2", "b", "train"), ("v3", "d", "train"),
        ("v4", "b", "val"), ("v5", "d", "val"), ("v6", "b", "train"), ("v7", "a", "train")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grow")
    for i, (name, _, _) in enumerate(ROWS):
        media.make_video(root / f"{name}.mp4", seconds=1.0, size=(32, 24), colour=(30 * i, 90, 140))
    return root


def _manifest(root: Path, rows: list[tuple[str, str, str]], name: str) -> Path:
    lines = ["path,label,split"] + [f"{root / v}.mp4,{label},{split}" for v, label, split in rows]
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


def _extract(manifest: Path, out: Path, cluster: Client, said: list[str] | None = None):
    opts = RunOptions(shard_size=2, scheduler=cluster.scheduler.address, device="cpu")
    return run_extract(load_manifest("csv", None, manifest), CONFIG, opts, out,
                       echo=(said if said is not None else []).append, progress=False)


def _by_id(path: Path) -> dict[str, dict[str, object]]:
    with h5py.File(path, "r") as f:
        names = f["classes/name"].asstr()[()].tolist()
        ids = f["videos/id"].asstr()[()].tolist()
        cols = {k: f[k][()] for k in ("visual/clips", "audio/segments", "visual/mask", "audio/mask", "text/video")}
        labels, splits = f["videos/label"][()], f["videos/split"].asstr()[()]
    return {v: {"label": names[labels[i]], "split": splits[i], **{k: c[i] for k, c in cols.items()}}
            for i, v in enumerate(ids)}


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for v in a:
        assert a[v]["label"] == b[v]["label"] and a[v]["split"] == b[v]["split"], v
        for k in ("visual/clips", "audio/segments", "visual/mask", "audio/mask", "text/video"):
            assert np.array_equal(a[v][k], b[v][k]), (v, k)


def test_grow_by_a_split_then_by_videos_of_a_new_class(corpus, cluster, tmp_path):
    out = tmp_path / "s.h5"
    first = _extract(_manifest(corpus, ROWS[:4], "train.csv"), out, cluster)
    assert first.videos == 4 and first.shards_run == 2
    said: list[str] = []
    grown = _extract(_manifest(corpus, ROWS[:6], "train_val.csv"), out, cluster, said)
    assert (grown.videos, grown.shards_run) == (6, 1)  # only the two val videos were extracted
    assert any("growing the store by 2 videos (4 kept)" in s for s in said)
    with h5py.File(out, "r") as f:
        assert f["videos/id"].asstr()[()].tolist() == [r[0] for r in ROWS[:6]]
    said.clear()
    again = _extract(_manifest(corpus, ROWS, "all.csv"), out, cluster, said)
    assert (again.videos, again.shards_run) == (8, 1)
    assert any("class table changed (2 -> 3 classes, new: a)" in s for s in said)
    assert check_store(out).problems == []
    whole = tmp_path / "whole.h5"
    _extract(_manifest(corpus, ROWS, "all.csv"), whole, cluster)
    _same(_by_id(out), _by_id(whole))
    assert _extract(_manifest(corpus, ROWS, "all.csv"), out, cluster).already_done


def test_a_store_grows_only_by_a_superset(corpus, cluster, tmp_path):
    out = tmp_path / "s.h5"
    _extract(_manifest(corpus, ROWS[:4], "train.csv"), out, cluster)
    with pytest.raises(CavnetError, match="holds 1 videos this corpus does not list .e.g. v0."):
        _extract(_manifest(corpus, ROWS[1:6], "other.csv"), out, cluster)


@pytest.mark.slow
def test_growing_killed_mid_way_then_rerun_is_exact(corpus, cluster, tmp_path):
    out, shard_dir = tmp_path / "s.h5", tmp_path / "s.h5.shards"
    _extract(_manifest(corpus, ROWS[:4], "train.csv"), out, cluster)
    before = _by_id(out)
    env = {**os.environ, "CAVNET_FAULT_HANG_ON": "shard-00001.h5", "CAVNET_FAULT_HANG_SECONDS": "300"}
    cmd = [sys.executable, "-m", "cavnet.cli", "extract", "--dataset", "csv", "--manifest",
           str(_manifest(corpus, ROWS, "all.csv")), "--out", str(out), "--visual", "resnext3d-tiny", "--audio",
           "audio-cnn-tiny", "--clips", "2", "--segments", "2", "--workers", "1", "--shard-size", "2", "--device",
           "cpu", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while not any(shard_dir.glob("shard-00001.h5.*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    _same(_by_id(out), before)  # the store is as it was: growing commits only at its end
    summary = _extract(_manifest(corpus, ROWS, "all.csv"), out, cluster)
    assert (summary.videos, summary.shards_run, summary.shards_skipped) == (8, 1, 1)
    whole = tmp_path / "whole.h5"
    _extract(_manifest(corpus, ROWS, "all.csv"), whole, cluster)
    _same(_by_id(out), _by_id(whole))
