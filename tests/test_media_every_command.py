"""The media sandbox (issue 27, kind 1) over every command that reads videos: probe, prepare, extract,
predict, evaluate on raw videos and finetune each read one corpus of hostile files (concat lists that loop,
or name a URL or another file, an HLS playlist, an image-sequence pattern, a real video in a folder named
``http:``, 9-channel audio) beside good videos. Each command ends, with its documented exit code, no
connection to the network, a status for every file (the hostile ones refused, the good ones read) and
nothing written outside its output. tests/test_media_sandbox.py checks each reader alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

import media
from cavnet.cli import main
from cavnet.extract.status import DECODE_ERROR
from sandbox_media import REFUSED as HOSTILE, hostile_files, pcm_file

@pytest.fixture(scope="module")
def corpus(tmp_path_factory, listener) -> dict[str, Path]:
    """Good videos of two classes in train and val, the hostile files, and manifests of both."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good"
    good.mkdir()
    rows = []
    for i, (label, split) in enumerate([("a", "train"), ("b", "train"), ("a", "val"), ("b", "val")]):
        colour, hz = ((200, 40, 90), 440.0) if label == "a" else ((30, 160, 220), 880.0)
        path = media.make_video(good / f"{label}{i}.mp4", seconds=1.0, size=(32, 24), colour=colour, hz=hz)
        rows.append((path, label, split))
    (root / "http:").mkdir()  # a real video whose path looks like a URL
    rows.append((media.make_video(root / "http:" / "real.mp4", seconds=1.0, size=(32, 24)), "a", "val"))
    hostile = hostile_files(root, listener.port, rows[0][0])
    for i, path in enumerate(hostile.values()):
        rows.append((path, "ab"[i % 2], ("train", "val")[i % 2]))
    pcm = np.random.default_rng(0).integers(-8000, 8000, size=(av.AudioLayout("9 channels").nb_channels, 16000),
                                            dtype=np.int16)
    rows.append((pcm_file(root / "nine.mkv", pcm, 16000, "9 channels"), "b", "val"))
    clean, every = root / "clean.csv", root / "every.csv"
    clean.write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows[:4]))
    every.write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))
    return {"root": root, "clean": clean, "every": every, **hostile, "real": rows[4][0], "nine": root / "nine.mkv"}


def _extract(manifest: Path, out: Path) -> list[str]:
    return ["extract", "--dataset", "csv", "--manifest", str(manifest), "--out", str(out), "--visual",
            "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--clips", "2", "--segments", "2", "--workers", "1",
            "--shard-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory) -> Path:
    """A fuse-train checkpoint on the good videos' features: evaluate and finetune read videos with it."""
    work = tmp_path_factory.mktemp("ckpt")
    r = CliRunner().invoke(main, _extract(corpus["clean"], work / "s.h5"))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(work / "s.h5"), "--out", str(work / "run"),
                                  "--epochs", "1", "--batch-size", "2", "--d-model", "16", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    return work / "run" / "last.pt"


def _statuses_of_table(path: Path, name_col: str, status_col: str) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {Path(row[name_col]).name: row[status_col] for row in csv.DictReader(fh)}


def _store_statuses(path: Path) -> dict[str, str]:
    from cavnet.extract.store.reader import FeatureStore

    with FeatureStore(path) as s:
        rows = s.rows()
        return {Path(p).name: str(st) for p, st in zip(s.block(0, s.num_videos)["videos/path"], rows.statuses)}


def _by_id(corpus: dict[str, Path], table: dict[str, str]) -> dict[str, str]:
    """Video-id keyed statuses (evaluate's table) as file names, through the manifest's ids (the file stems)."""
    return {Path(corpus[k]).name: table[Path(corpus[k]).stem] for k in (*HOSTILE, "real", "nine")
            if Path(corpus[k]).stem in table}


def _run(command: str, corpus: dict[str, Path], ckpt: Path, out: Path) -> tuple[object, dict[str, str] | None]:
    every = str(corpus["every"])
    argv = {
        "probe": ["probe", "--dataset", "csv", "--manifest", every, "--out", str(out / "probe.csv")],
        "prepare": ["prepare", "--dataset", "csv", "--manifest", every, "--out", str(out / "prepared"),
                    "--workers", "1", "--no-progress", "--short-side", "16"],
        "extract": _extract(corpus["every"], out / "s.h5"),
        "predict": ["predict", *(str(corpus[k]) for k in (*HOSTILE, "real", "nine")), "--checkpoint", str(ckpt),
                    "--csv", str(out / "p.csv"), "--device", "cpu", "--decode-workers", "0"],
        "evaluate": ["evaluate", "--dataset", "csv", "--manifest", every, "--checkpoint", str(ckpt), "--out",
                     str(out / "ev"), "--device", "cpu", "--decode-workers", "0", "--no-progress"],
        "finetune": ["finetune", "--init", str(ckpt), "--dataset", "csv", "--manifest", every, "--out",
                     str(out / "ft"), "--device", "cpu", "--decode-workers", "0", "--batch-size", "2",
                     "--no-progress", "--no-eval-init"],
    }[command]
    r = CliRunner().invoke(main, argv)
    tables = {
        "probe": lambda: _statuses_of_table(out / "probe.csv", "path", "status"),
        "prepare": lambda: _statuses_of_table(out / "prepared" / "prepare.csv", "source", "status"),
        "extract": lambda: _store_statuses(out / "s.h5"),
        "predict": lambda: _statuses_of_table(out / "p.csv", "path", "status"),
        "evaluate": lambda: _by_id(corpus, _statuses_of_table(out / "ev" / "predictions_val.csv", "id", "status")),
        "finetune": lambda: None,
    }
    return r, tables[command]() if r.exit_code == 0 else None


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["probe", "prepare", "extract", "predict", "evaluate", "finetune"])
def test_every_reader_of_videos_ends_with_a_status_for_each_and_reaches_nothing_outside(
        corpus, checkpoint, listener, tmp_path, command):
    before = _snapshot(corpus["root"])
    r, statuses = _run(command, corpus, checkpoint, tmp_path)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert listener.connections == 0, f"{command} connected to the network"
    assert _snapshot(corpus["root"]) == before, "an input was changed or a file written beside it"
    if command == "finetune":  # no per-file table: its train videos that do not decode are replaced
        assert (tmp_path / "ft" / "last.pt").exists()
        run = json.loads((tmp_path / "ft" / "run.json").read_text())
        assert run["ended"], run
        return
    for name in HOSTILE:
        file = Path(corpus[name]).name
        if command == "evaluate" and Path(corpus[name]).stem not in statuses:
            continue  # a train video: evaluate reads val only
        assert statuses[file] == DECODE_ERROR, (command, name, statuses)
    assert statuses[Path(corpus["real"]).name] in ("ok", "prepared"), statuses
    nine = statuses[Path(corpus["nine"]).name]
    assert nine in ("no_video", "prepared", "ok"), statuses  # audio only: its 9 channels read as mono
