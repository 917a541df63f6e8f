"""Damaged stores never hang a command and never print a traceback (docs/reliability.md, issue 18).

Each damage is made on a copy of one small sound store. The HDF5 metadata is read first in a child
process with a time bound (``CAVNET_STORE_PROBE_TIMEOUT``, 2 s here), so the zeros that make the HDF5
library spin forever cost a few seconds and end as ``store X is damaged: ...``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from hostile import damaged_copy, drop_dataset, one_line_error, set_attr, truncate, zeros
from store_factory import make_store

# found by overwriting 4 KiB of zeros at every 512-byte offset of the factory's store: these spin forever
# inside H5Aread without the time bound (checked by hand: > 120 s)
HANGS = {"zeros@2560": zeros(2560), "zeros@3072": zeros(3072)}
ERRORS = {
    "zeros@512 (KeyError)": (zeros(512), "KeyError"),
    "zeros@1024 (bad global heap)": (zeros(1024), "bad global heap"),
    "zeros@0 (no signature)": (zeros(0), "not an HDF5 file"),
    "truncated to 40%": (truncate(0.4), "damaged"),
    "truncated to 95%": (truncate(0.95), "damaged"),
}
MISSING = ["visual/clips", "classes/name", "text/video", "videos/status"]
BAD_ATTRS = {"config deleted": (set_attr("config", None), "config"),
             "config not JSON": (set_attr("config", "{not json"), "damaged"),
             "dims deleted": (set_attr("dims", None), "dims")}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "store.h5"
    make_store(path, videos=12)
    return path


@pytest.fixture(scope="module")
def checkpoint(good, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "r"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(good), "--out", str(run), "--epochs", "1",
                                  "--batch-size", "4", "--d-model", "16", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    return run / "last.pt"


@pytest.fixture(autouse=True)
def short_probe(monkeypatch):
    monkeypatch.setenv("CAVNET_STORE_PROBE_TIMEOUT", "2")


def _commands(store: Path, tmp: Path, checkpoint: Path) -> dict[str, list[str]]:
    (tmp / "m.csv").write_text("path,label\nnone.mp4,a\n")
    return {
        "fuse-train": ["fuse-train", "--store", str(store), "--out", str(tmp / "run"), "--epochs", "1",
                       "--device", "cpu", "--no-progress"],
        "evaluate": ["evaluate", "--store", str(store), "--checkpoint", str(checkpoint), "--device", "cpu"],
        "extract": ["extract", "--dataset", "csv", "--manifest", str(tmp / "m.csv"), "--out", str(store),
                    "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--device", "cpu", "--no-progress"],
    }


@pytest.mark.parametrize("name", list(HANGS))
def test_check_ends_on_metadata_that_hangs_hdf5(good, tmp_path, name):
    store = damaged_copy(good, tmp_path, HANGS[name])
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["check", str(store)])
    assert time.monotonic() - t0 < 600  # a safety net: the message above says the bound was kept
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "damaged: reading its metadata did not finish within 2 s" in r.output


@pytest.mark.parametrize("command", ["fuse-train", "evaluate", "extract"])
def test_commands_end_on_metadata_that_hangs_hdf5(good, checkpoint, tmp_path, command):
    store = damaged_copy(good, tmp_path, HANGS["zeros@3072"])
    t0 = time.monotonic()
    r = CliRunner().invoke(main, _commands(store, tmp_path, checkpoint)[command])
    assert time.monotonic() - t0 < 600  # a safety net: the message above says the bound was kept
    one_line_error(r, f"store {store} is damaged: reading its metadata did not finish within 2 s")


@pytest.mark.parametrize("name", list(ERRORS))
@pytest.mark.parametrize("command", ["check", "fuse-train", "evaluate", "extract"])
def test_damaged_stores_give_one_line(good, checkpoint, tmp_path, name, command):
    damage, needle = ERRORS[name]
    store = damaged_copy(good, tmp_path, damage)
    if command == "check":
        r = CliRunner().invoke(main, ["check", str(store)])
        assert r.exit_code == 1 and "Traceback" not in r.output and needle in r.output, r.output
        return
    line = one_line_error(r := CliRunner().invoke(main, _commands(store, tmp_path, checkpoint)[command]))
    assert needle in line or "not a cavnet store" in line, line


@pytest.mark.parametrize("dataset", MISSING)
@pytest.mark.parametrize("command", ["fuse-train", "evaluate"])
def test_a_store_missing_a_dataset_names_it(good, checkpoint, tmp_path, dataset, command):
    store = damaged_copy(good, tmp_path, drop_dataset(dataset))
    one_line_error(CliRunner().invoke(main, _commands(store, tmp_path, checkpoint)[command]),
                   f"store {store} is damaged: dataset {dataset} is missing")
    r = CliRunner().invoke(main, ["check", str(store)])
    assert r.exit_code == 1 and dataset in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("name", list(BAD_ATTRS))
def test_bad_root_attributes_give_one_line(good, checkpoint, tmp_path, name):
    damage, needle = BAD_ATTRS[name]
    store = damaged_copy(good, tmp_path, damage)
    one_line_error(CliRunner().invoke(main, _commands(store, tmp_path, checkpoint)["fuse-train"]), needle)
    r = CliRunner().invoke(main, ["check", str(store)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output


def test_resume_against_a_store_with_another_class_table_is_refused(good, tmp_path):
    """Verifies the harness's existing check (``Checkpoint.check_matches_store``) through the CLI."""
    other = tmp_path / "other.h5"
    make_store(other, videos=12, classes=6)
    run = tmp_path / "run"
    args = ["--out", str(run), "--epochs", "2", "--batch-size", "4", "--d-model", "16", "--device", "cpu",
            "--no-progress"]
    assert CliRunner().invoke(main, ["fuse-train", "--store", str(good), *args[:3], "1", *args[4:]]).exit_code == 0
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(other), *args, "--resume"])
    line = one_line_error(r)
    assert "class" in line, line
