"""The outputs door (issue 27, kind 2) over every command that writes: each is run with outputs it cannot
write (under a regular file, a name too long, a read-only filesystem, a full one, a folder or a file in the
way) and must end with one ``cavnet: error:`` line naming the output and exit 2, before its work where the
output can be checked first, with nothing written beside the output and no input changed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import media
from cavnet.cli import main
from cavnet.extract.store.writer import StoreDims
from hostile import one_line_error
from store_factory import make_store


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    """A store, a checkpoint trained on it, a video and a CSV manifest of it: the inputs of every command."""
    root = tmp_path_factory.mktemp("inputs")
    store = root / "store.h5"
    make_store(store, videos=12, dims=StoreDims(4, 4, 256, 128))  # the widths its recorded backbones give
    run = root / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "1",
                                  "--batch-size", "4", "--d-model", "16", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    video = media.make_video(root / "v.mp4", seconds=0.5, size=(32, 24))
    (root / "m.csv").write_text(f"path,label\n{video},a\n")
    return {"store": store, "checkpoint": run / "last.pt", "video": video, "manifest": root / "m.csv"}


def _argv(command: str, out: Path, w: dict[str, Path]) -> list[str]:
    """``command`` writing its output to ``out`` (a folder or a file, whichever the command writes)."""
    return {
        "extract": ["extract", "--dataset", "csv", "--manifest", str(w["manifest"]), "--out", str(out),
                    "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--device", "cpu", "--no-progress"],
        "fuse-train": ["fuse-train", "--store", str(w["store"]), "--out", str(out), "--epochs", "1", "--batch-size",
                       "4", "--d-model", "16", "--device", "cpu", "--no-progress"],
        "evaluate": ["evaluate", "--store", str(w["store"]), "--checkpoint", str(w["checkpoint"]), "--out", str(out),
                     "--device", "cpu", "--no-progress"],
        "ablate": ["ablate", "--store", str(w["store"]), "--out", str(out), "--epochs", "1", "--seeds", "1",
                   "--variants", "cavnet", "--d-model", "16", "--device", "cpu", "--workers", "1"],
        "finetune": ["finetune", "--init", str(w["checkpoint"]), "--out", str(out), "--dataset", "csv",
                     "--manifest", str(w["manifest"]), "--device", "cpu", "--no-progress"],
        "predict --json": ["predict", str(w["video"]), "--checkpoint", str(w["checkpoint"]), "--json", str(out),
                           "--device", "cpu"],
        "predict --csv": ["predict", str(w["video"]), "--checkpoint", str(w["checkpoint"]), "--csv", str(out),
                          "--device", "cpu"],
        "export": ["export", str(w["store"]), "--out", str(out)],
        "synth": ["synth", str(out), "--videos", "4"],
        "probe --out": ["probe", "--dataset", "csv", "--manifest", str(w["manifest"]), "--out", str(out)],
        "prepare": ["prepare", "--dataset", "csv", "--manifest", str(w["manifest"]), "--out", str(out),
                    "--workers", "1", "--no-progress"],
        "demo": ["demo", "--out", str(out), "--videos", "24", "--no-progress"],
        "bench --json": ["bench", "--small", "--device", "cpu", "--json", str(out)],
    }[command]


COMMANDS = ("extract", "fuse-train", "evaluate", "ablate", "finetune", "predict --json", "predict --csv", "export",
            "synth", "probe --out", "prepare", "demo", "bench --json")
FILES = ("extract", "predict --json", "predict --csv", "probe --out", "bench --json")  # the rest write a folder


def _inputs(w: dict[str, Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (w["store"], w["checkpoint"], w["video"], w["manifest"])}


def _run(command: str, out: Path, w: dict[str, Path], needle: str) -> str:
    before = _inputs(w)
    line = one_line_error(CliRunner().invoke(main, _argv(command, out, w)), needle)
    assert _inputs(w) == before, "an input was changed"
    return line


CASES = {"under a regular file": ("file/out", "a path component is not a directory"),
         "a name too long": ("x" * 256, "file name too long")}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_that_cannot_be_made_is_one_line(work, tmp_path, command, case):
    (tmp_path / "file").write_text("a regular file")
    name, needle = CASES[case]
    line = _run(command, tmp_path / name, work, needle)
    assert str(tmp_path) in line  # the line names the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written beside it


@pytest.mark.parametrize("command", COMMANDS)
def test_the_wrong_kind_of_thing_in_the_way_is_one_line(work, tmp_path, command):
    out = tmp_path / "out"
    if command in FILES:
        out.mkdir()  # a folder where a file is to be written
        needle = "is a folder"
    else:
        out.write_text("a regular file")  # a file where a folder is to be written
        needle = "is a file"
    _run(command, out, work, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert out.is_dir() == (command in FILES) and (command in FILES or out.read_text() == "a regular file")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_filesystem_is_one_line_before_any_work(work, mount, command):
    ro = mount("ro,size=1m")
    _run(command, ro / "out", work, "read-only file system")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_filesystem_is_one_line(work, mount, command):
    full = mount("size=64k")
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # every block taken
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    _run(command, full / "out", work, "disk full")
    assert {p.name for p in full.iterdir()} <= {"filler", "out"}
