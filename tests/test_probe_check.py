"""``cavnet probe`` on a small Kinetics-layout corpus, and ``cavnet check`` on a sound store and on copies
of it broken one way each (the exact list of problems is asserted)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import media
from cavnet.cli import main
from cavnet.extract.store.writer import StoreDims
from cavnet.extract.store.check import check_store
from store_factory import make_store

# youtube id -> expected probe status; every file is train/{id}_000000_000010.{ext}
PROBED = {"okvid": "ok", "noaudio": "no_audio", "oddsize": "ok", "webmvid": "ok", "zerobyte": "empty_file",
          "garbage": "decode_error", "audioonly": "no_video", "absent": "missing_file", "poison": "worker_crash"}


def _k400_id(name: str) -> str:
    return f"{name}_000000_000010"


@pytest.fixture(scope="module")
def k400(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k400")
    train = root / "train"
    train.mkdir()
    media.make_video(train / f"{_k400_id('okvid')}.mp4", seconds=1.0, size=(32, 24))
    media.make_video(train / f"{_k400_id('noaudio')}.mp4", seconds=1.0, size=(32, 24), with_audio=False)
    media.make_video(train / f"{_k400_id('oddsize')}.mkv", seconds=1.0, size=(33, 25), audio_rate=48000,
                     channels=2)
    media.make_video(train / f"{_k400_id('webmvid')}.webm", seconds=1.0, size=(32, 24), audio_rate=48000)
    media.zero_byte(train / f"{_k400_id('zerobyte')}.mp4")
    media.random_bytes(train / f"{_k400_id('garbage')}.mp4")
    media.make_audio_only(train / f"{_k400_id('audioonly')}.mp4")
    media.make_video(train / f"{_k400_id('poison')}.mp4", seconds=1.0, size=(32, 24))
    rows = ["label,youtube_id,time_start,time_end,split"] + [f"{'ab'[i % 2]},{name},0,10,train"
                                                            for i, name in enumerate(PROBED)]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def test_probe_records_and_summarises_every_file(k400, monkeypatch):
    monkeypatch.setenv("CAVNET_FAULT_CRASH_ON", "poison")  # kills whichever process opens it
    out = k400 / "probe.csv"
    r = CliRunner().invoke(main, ["probe", "--dataset", "k400", "--root", str(k400), "--out", str(out),
                                  "--workers", "1", "--shard-size", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    with open(out, newline="") as fh:
        table = {row["video_id"]: row for row in csv.DictReader(fh)}
    assert {k: row["status"] for k, row in table.items()} == {_k400_id(k): v for k, v in PROBED.items()}
    ok = table[_k400_id("okvid")]
    assert {k: ok[k] for k in ("container", "video_codec", "width", "height", "fps", "frames", "audio_codec",
                               "sample_rate", "channels", "error")} == {
        "container": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "h264", "width": "32", "height": "24",
        "fps": "25.0", "frames": "25", "audio_codec": "aac", "sample_rate": "16000", "channels": "1", "error": ""}
    assert float(ok["duration"]) == pytest.approx(1.0, abs=0.05)
    assert int(ok["bytes"]) == (k400 / "train" / f"{_k400_id('okvid')}.mp4").stat().st_size
    assert table[_k400_id("poison")]["error"] == "the probing process died on this file"
    lines = r.output.splitlines()
    assert lines[lines.index("probe chunk 2: worker lost; redoing it with each file in a process of its own")]
    summary = lines[lines.index(next(x for x in lines if x.startswith("9 files: "))):]
    assert summary == [
        "9 files: ok 3, no_audio 1, empty_file 1, decode_error 1, no_video 1, missing_file 1, worker_crash 1",
        "without audio: 1 of 4 videos",
        "resolutions: 32x24 (3), 33x25 (1)",
        "frame rates: 25 (3), 30 (1)",  # the odd-size mkv (media.write_av) declares 30 fps for 25 fps pts
        "containers: mov,mp4,m4a,3gp,3g2,mj2 (3), matroska,webm (2)",
        "video codecs: h264 (3), vp9 (1)",
        "audio: aac 16000 Hz 1 ch (2), aac 48000 Hz 2 ch (1), opus 48000 Hz 1 ch (1)",
        f"per-file table: {out}"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["probe", "--dataset", "k400", "--root", "/no/such/root"], "cavnet: error: /no/such/root: dataset root is "
                                                               "not a directory"),
    (["probe", "--dataset", "k400", "--root", "{root}", "--out", "/no/such/dir/p.csv"],
     "cavnet: error: --out /no/such/dir/p.csv: folder /no/such/dir does not exist"),
    (["check", "/no/such/store.h5"], "cavnet: error: Invalid value for 'STORE': Path '/no/such/store.h5' does "
                                     "not exist."),
])
def test_bad_arguments_give_one_line_and_exit_2(k400, args, message):
    r = _cli(*[a.format(root=k400) for a in args])
    assert (r.returncode, r.stderr.strip(), r.stdout) == (2, message, "")


# ---------------------------------------------------------------------------------------------- check
DIMS = StoreDims(clips=2, segments=2, visual_dim=256, audio_dim=128)  # as resnext3d-tiny / audio-cnn-tiny give


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A consolidated store of 12 videos (every 4th without audio, row 5 failed), nothing left beside it."""
    path = tmp_path_factory.mktemp("check") / "good.h5"
    make_store(path, videos=12, classes=4, dims=DIMS, text_dim=8, no_audio_every=4, shard_size=6)
    shutil.rmtree(path.with_name(path.name + ".shards"))
    with h5py.File(path, "r+") as f:
        f["videos/status"][5], f["videos/error"][5] = "decode_error", "InvalidDataError: bad"
        for name in ("visual/clips", "visual/mask", "audio/segments", "audio/mask"):
            f[name][5] = 0
    return path


def _broken(good: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "store.h5"
    shutil.copy(good, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f[name] = data


def test_a_sound_store_passes(good):
    r = CliRunner().invoke(main, ["check", str(good)])
    assert (r.exit_code, r.output) == (0, f"{good}: ok; format 2, 12 videos (ok 8, no_audio 3, decode_error 1); "
                                          "n=2 clips x 256, m=2 segments x 128, text 8, 4 classes; text sets "
                                          "default\n"
                                          "random weights: features from randomly initialised visual resnext3d-tiny "
                                          "and audio audio-cnn-tiny (no pretrained weights), so accuracies say "
                                          "nothing about pretrained features; see docs/backbones.md\n")


BREAKS = {
    "version": (lambda f: f.attrs.__setitem__("format_version", 3), ["format_version is 3, this cavnet reads 1, 2"]),
    "missing": (lambda f: f.__delitem__("audio/mask"), ["audio/mask missing"]),
    "shape": (lambda f: _replace(f, "visual/clips", np.zeros((12, 3, 256), np.float16)),
              ["visual/clips is (12, 3, 256) float16, expected (12, 2, 256) float16"]),
    "dtype": (lambda f: _replace(f, "videos/label", f["videos/label"][()].astype(np.float64)),
              ["videos/label is (12,) float64, expected (12,) int32"]),
    "nan": (lambda f: f["visual/clips"].__setitem__((3, 0, 7), np.nan),
            ["visual/clips: non-finite values in 1 rows (vid00003)"]),
    "failed-with-clips": (lambda f: f["visual/mask"].__setitem__((5, 0), True),
                          ["1 failed rows with clips or segments (vid00005)"]),
    "no-audio-with-audio": (lambda f: f["audio/mask"].__setitem__((4, 0), True),
                            ["1 no_audio rows with audio segments (vid00004)"]),
    "not-prefix": (lambda f: f["visual/mask"].__setitem__(1, [False, True]),
                   ["1 visual/mask rows that are not a prefix (vid00001)",
                    "visual/clips: non-zero padding in 1 rows (vid00001)"]),
    "padding": (lambda f: f["audio/segments"].__setitem__((2, 1, 0), 1.0),
                ["audio/segments: non-zero padding in 1 rows (vid00002)"]),
    "duplicate": (lambda f: f["videos/id"].__setitem__(7, "vid00006"), ["duplicate video ids: vid00006"]),
    "status": (lambda f: f["videos/status"].__setitem__(9, "weird"),
               ["unknown status ['weird'] in 1 rows (vid00009)"]),
    "silent-failure": (lambda f: f["videos/error"].__setitem__(5, ""),
                       ["1 failed rows without an error message (vid00005)"]),
    "label": (lambda f: f["videos/label"].__setitem__(0, 4), ["1 labels outside -1..3 (vid00000)"]),
    "count": (lambda f: f.attrs.__setitem__("num_videos", 13),
              [f"{n} is (12,) {k}, expected (13,) {k}" for n, k in (
                  ("videos/id", "str"), ("videos/split", "str"), ("videos/path", "str"), ("videos/status", "str"),
                  ("videos/error", "str"), ("videos/label", "int32"), ("videos/duration", "float32"),
                  ("videos/fps", "float32"))] + [
                  "visual/clips is (12, 2, 256) float16, expected (13, 2, 256) float16",
                  "visual/mask is (12, 2) bool, expected (13, 2) bool",
                  "audio/segments is (12, 2, 128) float16, expected (13, 2, 128) float16",
                  "audio/mask is (12, 2) bool, expected (13, 2) bool",
                  "text/video is (12, 8) float16, expected (13, 8) float16",
                  "text/string is (12,) str, expected (13,) str"]),
    "shard": (lambda f: f.attrs.__delitem__("num_videos"),
              ["root attribute 'num_videos' missing (a shard or an unfinished store?)"]),
    "dims": (lambda f: f.attrs.__setitem__("dims", '{"clips": 2, "segments": 2, "visual_dim": 64, '
                                                   '"audio_dim": 128}'),
             ["dims visual_dim is 64, backbone resnext3d-tiny gives 256",
              "visual/clips is (12, 2, 256) float16, expected (12, 2, 64) float16"]),
    "embedding": (lambda f: f["classes/embedding"].__setitem__(0, np.full(8, 2.0, np.float32)),
                  ["classes/embedding: rows not unit length (norms 1.000..5.657)"]),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_break_is_named(good, tmp_path, name):
    edit, problems = BREAKS[name]
    assert check_store(_broken(good, tmp_path, edit)).problems == problems


def test_leftovers_and_non_stores_are_named(good, tmp_path):
    path = _broken(good, tmp_path, lambda f: None)
    (tmp_path / "store.h5.shards").mkdir()
    (tmp_path / "store.h5.123-abc.tmp").write_bytes(b"x")
    assert check_store(path).problems == [
        f"shard folder {tmp_path / 'store.h5.shards'} is still there: the extraction did not finish its "
        "consolidation; rerun the same extract command",
        f"stray tmp file {tmp_path / 'store.h5.123-abc.tmp'} (a writer died); rerun extract or delete it"]
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    assert check_store(text).problems == [
        "not an HDF5 file (Unable to synchronously open file (file signature not found))"]


def test_check_exits_1_and_lists_the_problems(good, tmp_path):
    path = _broken(good, tmp_path, BREAKS["nan"][0])
    r = CliRunner().invoke(main, ["check", str(path)])
    assert (r.exit_code, r.stdout, r.stderr) == (
        1, f"{path}: 1 problem(s)\n  - visual/clips: non-finite values in 1 rows (vid00003)\n", "")
