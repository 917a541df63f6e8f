"""Outputs under hostile conditions (issue 18): one writer per output, unwritable and full filesystems,
damaged plan files, foreign files in a shard folder, and schedulers that are malformed or never answer.
Every case ends with one ``cavnet: error:`` line and exit 2 (docs/cli.md), well within 60 s."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.extract.store.lock import lock_path
from cavnet.pipelines.extract.run import _remove_shard_dir, _remove_strays
from hostile import one_line_error
from store_factory import make_store

HOLD = ("import sys; from pathlib import Path; from cavnet.extract.store.lock import output_lock\n"
        "with output_lock(Path(sys.argv[1]), 'test'):\n    print('locked', flush=True); sys.stdin.read()")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s") / "store.h5"
    make_store(path, videos=12)
    return path


@pytest.fixture(scope="module")
def checkpoint(store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "r"
    r = CliRunner().invoke(main, _train(store, run))
    assert r.exit_code == 0, r.output
    return run / "last.pt"


def _train(store: Path, out: Path, epochs: int = 1) -> list[str]:
    return ["fuse-train", "--store", str(store), "--out", str(out), "--epochs", str(epochs), "--batch-size", "4",
            "--d-model", "16", "--device", "cpu", "--no-progress"]


def _extract(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--dataset", "csv", "--manifest", str(manifest), "--out", str(out), "--visual",
            "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--device", "cpu", "--no-progress", *extra]


@pytest.fixture
def manifest(tmp_path) -> Path:
    (tmp_path / "m.csv").write_text("path,label\nnone.mp4,a\n")
    return tmp_path / "m.csv"


def _commands(kind: str, out: Path, store: Path, checkpoint: Path, manifest: Path) -> list[str]:
    return {"extract": _extract(manifest, out),
            "fuse-train": _train(store, out),
            "evaluate": ["evaluate", "--store", str(store), "--checkpoint", str(checkpoint), "--out", str(out),
                         "--device", "cpu"],
            "ablate": ["ablate", "--store", str(store), "--out", str(out), "--epochs", "1", "--seeds", "1"],
            "finetune": ["finetune", "--init", str(checkpoint), "--out", str(out), "--dataset", "csv",
                         "--manifest", str(_corpus_of(checkpoint, manifest.parent)), "--device", "cpu"]}[kind]


def _corpus_of(checkpoint: Path, folder: Path) -> Path:
    """A manifest finetune reads before it takes its folder: the checkpoint's classes, files that exist (they
    are never decoded: the folder checks come first)."""
    from cavnet.fuse.checkpoint import Checkpoint

    lines = []
    for i, name in enumerate(Checkpoint.load(checkpoint).class_names):
        for split in ("train", "val"):
            (folder / f"{i}-{split}.mp4").write_bytes(b"x")
            lines.append(f"{folder / f'{i}-{split}.mp4'},{name},{split}\n")
    (folder / "corpus.csv").write_text("path,label,split\n" + "".join(lines))
    return folder / "corpus.csv"


@contextlib.contextmanager
def _held(output: Path):
    """Another process holding ``output``'s lock; yields its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------------ single writer
@pytest.mark.parametrize("kind", ["extract", "fuse-train", "ablate", "finetune"])
def test_a_second_writer_is_refused_naming_the_holder(store, checkpoint, manifest, tmp_path, kind):
    out = tmp_path / ("out.h5" if kind == "extract" else "out")
    with _held(out) as holder:
        t0 = time.monotonic()
        r = CliRunner().invoke(main, _commands(kind, out, store, checkpoint, manifest))
        line = one_line_error(r, f"is in use by pid {holder.pid} on {socket.gethostname()} since ")
        assert time.monotonic() - t0 < 600 and str(lock_path(out)) in line  # 600: a safety net, not a bound
    assert not (out / "last.pt").exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(store, tmp_path):
    out = tmp_path / "run"
    with _held(out) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert lock_path(out).exists()  # the file stays; the flock died with its process
        r = CliRunner().invoke(main, _train(store, out))
    assert r.exit_code == 0, r.output
    assert (out / "last.pt").exists() and not lock_path(out).exists()


def test_two_fuse_train_runs_on_one_out_the_second_is_refused_the_first_finishes(store, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-m", "cavnet.cli", *_train(store, out, epochs=8)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists():  # it holds the lock from before it writes anything
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = CliRunner().invoke(main, _train(store, out, epochs=1))
    one_line_error(second, f"run folder {out} is in use by pid {first.pid}")
    assert first.wait(timeout=300) == 0, first.communicate()
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 9))  # no interleaved lines from the refused run
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(out / "last.pt"),
                                  "--device", "cpu"])
    assert r.exit_code == 0, r.output


# ------------------------------------------------------------------------------------- unwritable outputs
UNWRITABLE = {"under a regular file": ("file/out", "a path component is not a directory"),
              "name too long": ("x" * 252, "file name too long")}  # 255 with .h5: the shard folder's is over


@pytest.mark.parametrize("case", list(UNWRITABLE))
@pytest.mark.parametrize("kind", ["extract", "fuse-train", "evaluate", "ablate"])
def test_unwritable_out_is_refused_before_any_work(store, checkpoint, manifest, tmp_path, case, kind):
    (tmp_path / "file").write_text("a regular file")
    name, needle = UNWRITABLE[case]
    out = tmp_path / (name + (".h5" if kind == "extract" else "xxxx"))
    one_line_error(CliRunner().invoke(main, _commands(kind, out, store, checkpoint, manifest)), needle)


@pytest.mark.parametrize("kind", ["extract", "fuse-train", "evaluate", "ablate"])
def test_a_read_only_filesystem_is_refused_before_any_work(store, checkpoint, manifest, mount, kind):
    ro = mount("ro,size=1m")
    out = ro / ("out.h5" if kind == "extract" else "out")
    one_line_error(CliRunner().invoke(main, _commands(kind, out, store, checkpoint, manifest)),
                   "read-only file system")


def test_a_really_full_disk_while_a_store_is_written_says_disk_full(mount, capfd):
    from cavnet.extract.store.writer import stray_tmp_files

    tiny = mount("size=64k")
    with pytest.raises(OSError) as failed:
        make_store(tiny / "big.h5", videos=400, shard_size=400)
    assert failed.value.errno == 28 and "No space left on device" in str(failed.value)
    assert "Traceback" not in capfd.readouterr().err  # h5py's freeing errors are held back
    assert not list((tiny / "big.h5.shards").glob("*.tmp")) if (tiny / "big.h5.shards").exists() else True
    assert stray_tmp_files(tiny / "big.h5") == []


def test_fuse_train_on_a_really_full_disk_is_one_line(store, mount):
    tiny = mount("size=48k")
    one_line_error(CliRunner().invoke(main, _train(store, tiny / "run")), "disk full")


# ------------------------------------------------------------------------------------ plan and shard folder
PLANS = {"not JSON": "{", "a list": "[]", "no key": '{"shard_size": 4}',
         "key without corpus": '{"key": {"config": {}}, "shard_size": 4}',
         "shard_size 0": '{"key": {"config": {}, "corpus": "x"}, "shard_size": 0}',
         "shard_size text": '{"key": {"config": {}, "corpus": "x"}, "shard_size": "4"}',
         "shard_size true": '{"key": {"config": {}, "corpus": "x"}, "shard_size": true}'}


@pytest.mark.parametrize("case", [*PLANS, "a folder"])
def test_a_damaged_plan_is_refused(manifest, tmp_path, case):
    out = tmp_path / "s.h5"
    shards = tmp_path / "s.h5.shards"
    shards.mkdir()
    if case == "a folder":
        (shards / "plan.json").mkdir()
    else:
        (shards / "plan.json").write_text(PLANS[case])
    one_line_error(CliRunner().invoke(main, _extract(manifest, out)), f"{shards / 'plan.json'} is damaged")


def test_a_shard_folder_that_is_a_file_is_refused(manifest, tmp_path):
    (tmp_path / "s.h5.shards").write_text("x")
    one_line_error(CliRunner().invoke(main, _extract(manifest, tmp_path / "s.h5")), "s.h5.shards")


def test_files_cavnet_did_not_write_are_kept_and_reported(tmp_path):
    out, shards = tmp_path / "s.h5", tmp_path / "s.h5.shards"
    shards.mkdir()
    ours = ["shard-00001.h5.123-abcdef12.tmp", "plan.json.9-0123abcd.tmp"]
    foreign = ["notes.txt", "shard-1.h5.tmp", "backup.h5"]
    for name in ours + foreign + ["shard-00000.h5", "plan.json"]:
        (shards / name).write_text("x")
    said: list[str] = []
    _remove_strays(out, shards, said.append)
    assert sorted(p.name for p in shards.iterdir()) == sorted(foreign + ["shard-00000.h5", "plan.json"])
    assert said == [f"warning: {shards} holds 3 file(s) cavnet did not write, kept: backup.h5, notes.txt, "
                    "shard-1.h5.tmp"]
    _remove_shard_dir(shards, said.append)
    assert sorted(p.name for p in shards.iterdir()) == sorted(foreign) and "kept" in said[-1]


# ----------------------------------------------------------------------------------------------- scheduler
@pytest.mark.parametrize("address", ["http://h:8786", "tcp://host:port", "tcp://:8786", "host", "tcp://h:0",
                                     "tcp://h:99999", "tcp://h:1/x", "tcp://h\x00:1"])
def test_a_malformed_scheduler_is_refused_up_front(manifest, tmp_path, address):
    one_line_error(CliRunner().invoke(main, _extract(manifest, tmp_path / "s.h5", "--scheduler", address)),
                   "is not a Dask scheduler address")
    assert not (tmp_path / "s.h5.shards").exists()


def test_a_scheduler_that_never_answers_ends_in_seconds(manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("CAVNET_SCHEDULER_TIMEOUT", "2")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts TCP connections (the kernel completes them) and never answers
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.monotonic()
        r = CliRunner().invoke(main, _extract(manifest, tmp_path / "s.h5", "--scheduler", address))
        took = time.monotonic() - t0
    one_line_error(r, f"the Dask scheduler at {address} did not answer within 2 s")
    assert took < 600  # a safety net: the message says the 2-s bound was kept


@pytest.mark.parametrize("damage", ["zeros", "truncated", "garbage"])
def test_a_damaged_committed_shard_is_reported_and_redone(tmp_path, monkeypatch, damage):
    import numpy as np

    from cavnet.extract.manifest import ManifestRow
    from cavnet.extract.store.writer import StoreDims, VideoFeatures, write_shard
    from cavnet.pipelines.extract.run import _pending
    from cavnet.pipelines.extract.worker import ShardSpec
    from hostile import truncate, zeros

    monkeypatch.setenv("CAVNET_STORE_PROBE_TIMEOUT", "2")
    rows = tuple(ManifestRow(f"v{i}", f"/v{i}.mp4", 0, "a", "train") for i in range(2))
    feats = [VideoFeatures("ok", "", 1.0, 25.0, np.ones((1, 4), np.float32), np.ones((1, 2), np.float32))] * 2
    specs = [ShardSpec(i, 2 * i, rows, str(tmp_path / f"shard-{i:05d}.h5")) for i in range(2)]
    for spec in specs:
        write_shard(Path(spec.path), spec.start, rows, feats, StoreDims(2, 2, 4, 2), "{}")
    bad = Path(specs[1].path)
    {"zeros": zeros(0, 2048), "truncated": truncate(0.3),
     "garbage": lambda p: p.write_bytes(os.urandom(4096))}[damage](bad)
    said: list[str] = []
    assert [s.index for s in _pending(specs, said.append)] == [1]
    assert len(said) == 1 and said[0].startswith(f"shard 1: {bad} is damaged (") and said[0].endswith("redoing it")
    assert not bad.exists() and Path(specs[0].path).exists()
