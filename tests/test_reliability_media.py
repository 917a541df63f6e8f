"""Bad media through a real extract run: one mixed corpus, built and extracted once for the module.

Every kind of damaged or unusual file ends with its documented status, the run completes, the statuses
add up to the manifest, and the store passes ``cavnet check``. One valid file is a *poison* video: the
fault hook ``CAVNET_FAULT_CRASH_ON`` SIGKILLs whatever process opens it, every time, so its Dask worker
dies; the client must redo that shard with each video in a process of its own and record the poison as
``worker_crash``. "Unreadable" is tested with what root cannot read either: a directory, a dangling
symlink and a FIFO (``chmod 000`` does not stop root, and the suite runs as root).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import media
from cavnet.pipelines.extract.options import RunOptions
from cavnet.extract.store.check import check_store
from cavnet.pipelines.extract.run import run_extract
from cavnet.pipelines.extract.worker import ShardSpec, run_shard
from cavnet.extract.backbones.pretrained import extract_config
from cavnet.extract.datasets import load_manifest

SIZE = (32, 24)
# name -> expected status. Normal files are 2 s (2 clips of 16 frames at 25 fps, 2 audio examples).
EXPECTED = {
    "ok.mp4": "ok",
    "zero.mp4": "empty_file",
    "trunc02.mp4": "decode_error",  # mp4 truncated anywhere loses its index (PyAV writes it last)
    "trunc50.mp4": "decode_error",
    "trunc95.mp4": "decode_error",
    "cut02.mkv": "decode_error",  # only the EBML header left
    "cut15.mkv": "decode_error",  # headers, no complete frame
    "cut70.mkv": "short_decode",  # decoded duration under 80 % of the container's
    "cut97.mkv": "ok",  # loses under 20 %: within the documented tolerance
    "random.mp4": "decode_error",
    "header_garbage.mkv": "decode_error",  # a valid EBML/segment header, then random bytes
    "audio_only.mp4": "no_video",
    "no_audio.mp4": "no_audio",
    "short.mp4": "ok",  # 0.2 s: shorter than one clip, padded
    "vfr.mp4": "no_audio",  # variable frame rate, no audio track
    "odd.mp4": "ok",  # 33x25
    "large.mp4": "ok",  # 1920x1080
    "mono8k.mp4": "ok",
    "stereo48k.mp4": "ok",
    "surround51.mp4": "ok",
    "rate_change.ts": "ok",  # audio sample rate switches 48 kHz -> 22.05 kHz mid-stream
    "matroska.mkv": "ok",
    "webm.webm": "ok",
    "poison.mp4": "worker_crash",
    "directory.mp4": "decode_error",  # a directory where a file should be
    "dangling.mp4": "missing_file",  # a symlink to nothing
    "fifo.mp4": "empty_file",  # a named pipe: 0 bytes, never opened (so it cannot block the run)
    "missing.mp4": "missing_file",  # listed, not on disk
}
# name -> (real clips, real audio examples) for usable files
REAL = {"ok.mp4": (2, 2), "no_audio.mp4": (2, 0), "short.mp4": (1, 1), "cut70.mkv": (1, 1),
        "vfr.mp4": (2, 0), "large.mp4": (1, 1), "surround51.mp4": (2, 2), "rate_change.ts": (2, 2)}


def _video(root: Path, name: str, **kw) -> Path:
    return media.make_video(root / name, **{"seconds": 2.0, "size": SIZE, **kw})


def build_corpus(root: Path) -> Path:
    """Write every file of EXPECTED under ``root`` and a CSV manifest listing them; returns the CSV."""
    _video(root, "ok.mp4")
    media.zero_byte(root / "zero.mp4")
    for name, keep in (("trunc02.mp4", 0.02), ("trunc50.mp4", 0.5), ("trunc95.mp4", 0.95),
                       ("cut02.mkv", 0.02), ("cut15.mkv", 0.15), ("cut70.mkv", 0.7), ("cut97.mkv", 0.97)):
        media.truncate(_video(root, name), keep)
    media.random_bytes(root / "random.mp4")
    garbage = _video(root, "header_garbage.mkv")
    data = garbage.read_bytes()
    garbage.write_bytes(data[:200] + np.random.default_rng(1).bytes(len(data) - 200))
    media.make_audio_only(root / "audio_only.mp4")
    _video(root, "no_audio.mp4", with_audio=False)
    _video(root, "short.mp4", seconds=0.2)
    media.make_vfr_video(root / "vfr.mp4", size=SIZE)
    _video(root, "odd.mp4", size=(33, 25))
    _video(root, "large.mp4", size=(1920, 1080), seconds=0.7)
    _video(root, "mono8k.mp4", audio_rate=8000)
    _video(root, "stereo48k.mp4", audio_rate=48000, channels=2)
    _video(root, "surround51.mp4", audio_rate=48000, channels=6)
    media.make_rate_change_audio(root / "rate_change.ts")
    _video(root, "matroska.mkv")
    _video(root, "webm.webm")
    _video(root, "poison.mp4")
    (root / "directory.mp4").mkdir()
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    os.mkfifo(root / "fifo.mp4")
    lines = ["path,label,split"] + [f"{root / name},{'ab'[i % 2]},train" for i, name in enumerate(EXPECTED)]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


CONFIG = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default", "a video of a person {label}",
                        clips=2, segments=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The corpus extracted once with 2 workers and shards of 4, the poison armed."""
    root = tmp_path_factory.mktemp("mixed")
    manifest = load_manifest("csv", None, build_corpus(root))
    store, said = root / "store.h5", []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAVNET_FAULT_CRASH_ON", "poison.mp4")
        summary = run_extract(manifest, CONFIG, RunOptions(shard_size=4, workers=2, device="cpu"), store,
                              echo=said.append, progress=False)
    return manifest, store, summary, said


def _read(store: Path, *names: str) -> list[np.ndarray]:
    with h5py.File(store, "r") as f:
        return [f[n].asstr()[()] if h5py.check_string_dtype(f[n].dtype) else f[n][()] for n in names]


def test_every_file_gets_its_documented_status(run):
    manifest, store, summary, _ = run
    ids, status, error = _read(store, "videos/id", "videos/status", "videos/error")
    assert list(ids) == [Path(name).stem for name in EXPECTED]
    assert dict(zip(EXPECTED, status)) == EXPECTED
    failed = [e for s, e in zip(status, error) if s not in ("ok", "no_audio")]
    assert all(e and "\n" not in e for e in failed)


def test_statuses_add_up_to_the_manifest(run):
    manifest, store, summary, _ = run
    expected = {s: list(EXPECTED.values()).count(s) for s in set(EXPECTED.values())}
    assert summary.counts == expected and sum(summary.counts.values()) == len(manifest) == len(EXPECTED)
    assert (summary.shards_run, summary.shards_skipped) == (7, 0)
    assert sorted(p.name for p in store.parent.iterdir() if p.name.startswith("store.h5")) == ["store.h5"]


def test_masks_follow_the_statuses(run):
    _, store, _, _ = run
    status, vmask, amask = _read(store, "videos/status", "visual/mask", "audio/mask")
    for name, s, v, a in zip(EXPECTED, status, vmask, amask):
        if s not in ("ok", "no_audio", "short_decode"):
            assert not v.any() and not a.any(), name
    real = {name: (int(v.sum()), int(a.sum())) for name, v, a in zip(EXPECTED, vmask, amask) if name in REAL}
    assert real == REAL


def test_poison_video_is_isolated_and_the_rest_survive(run):
    _, store, _, said = run
    ids, status, error = _read(store, "videos/id", "videos/status", "videos/error")
    i = list(ids).index("poison")
    assert (status[i], error[i]) == ("worker_crash", "the decoding process died on this file")
    shard = i // 4
    assert [line for line in said if "worker lost" in line] == [
        f"shard {shard}: worker lost; redoing it with each file in a process of its own"]
    neighbours = slice(4 * shard, 4 * shard + 4)
    assert list(status[neighbours]) == [EXPECTED[n] for n in list(EXPECTED)[neighbours]]


def test_the_store_passes_check(run):
    _, store, _, _ = run
    result = check_store(store)
    assert result.problems == [] and result.facts["videos"] == len(EXPECTED)


def test_a_task_executed_twice_writes_identical_shards(run, tmp_path):
    manifest, store, _, _ = run
    spec = ShardSpec(0, 0, manifest.rows[:4], str(tmp_path / "shard-00000.h5"))
    opts = RunOptions(device="cpu")
    first = run_shard(spec, CONFIG.to_json(), opts)
    os.replace(spec.path, tmp_path / "first.h5")
    second = run_shard(spec, CONFIG.to_json(), opts)
    assert first.counts == second.counts == {"ok": 1, "empty_file": 1, "decode_error": 2}
    with h5py.File(tmp_path / "first.h5", "r") as a, h5py.File(spec.path, "r") as b:
        names = []
        a.visit(names.append)
        for name in names:
            if isinstance(a[name], h5py.Dataset):
                np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
        assert dict(a.attrs) == dict(b.attrs)
        clips = b["visual/clips"][()]
    # a third run finds the shard committed and leaves it alone
    before = os.stat(spec.path).st_mtime_ns
    third = run_shard(spec, CONFIG.to_json(), opts)
    assert third.reused and third.counts == first.counts and os.stat(spec.path).st_mtime_ns == before
    # the Dask workers (other processes) computed the same features: backbones are seeded
    (stored,) = _read(store, "visual/clips")
    np.testing.assert_allclose(stored[:4].astype(np.float32), clips.astype(np.float32), atol=2e-3, rtol=2e-3)


@pytest.mark.slow
def test_a_decode_pool_whose_process_dies_isolates_the_rest_of_the_shard(run, tmp_path, monkeypatch):
    manifest, _, _, _ = run
    names = ["ok.mp4", "poison.mp4", "no_audio.mp4", "zero.mp4", "mono8k.mp4"]
    rows = tuple(manifest.rows[list(EXPECTED).index(n)] for n in names)
    monkeypatch.setenv("CAVNET_FAULT_CRASH_ON", "poison.mp4")
    spec = ShardSpec(0, 0, rows, str(tmp_path / "shard-00000.h5"))
    result = run_shard(spec, CONFIG.to_json(), RunOptions(device="cpu", decode_workers=2))
    assert result.counts == {"ok": 2, "worker_crash": 1, "no_audio": 1, "empty_file": 1}
    with h5py.File(spec.path, "r") as f:
        assert list(f["videos/status"].asstr()[()]) == [EXPECTED[n] for n in names]
