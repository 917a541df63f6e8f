"""The outputs and inputs doors (issue 27) over every command that uses them: run folders claimed with a
marker (a foreign folder, another command's folder, other settings: refused before any work, nothing
written), predictions kept row by row through an interrupt, names from the disk printed escaped, text
inputs and manifests that are not what they claim (latin-1, a folder, a pipe, duplicated columns)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.extract.files.outputs import MARKER, read_marker
from hostile import one_line_error
from cavnet.extract.store.writer import StoreDims
from store_factory import make_store

FITTING = StoreDims(4, 4, 256, 128)  # resnext3d-tiny and audio-cnn-tiny, the backbones a factory store records


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s") / "store.h5"
    make_store(path, videos=12, dims=FITTING)  # widths its recorded backbones give: predict can build them
    return path


def _train(store: Path, out: Path, *extra: str) -> list[str]:
    return ["fuse-train", "--store", str(store), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--d-model", "16", "--device", "cpu", "--no-progress", *extra]


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    r = CliRunner().invoke(main, _train(store, out))
    assert r.exit_code == 0, r.output
    return out


def _ablate(store: Path, out: Path, *extra: str) -> list[str]:
    return ["ablate", "--store", str(store), "--out", str(out), "--epochs", "1", "--seeds", "1", "--variants",
            "cavnet", "--d-model", "16", "--batch-size", "4", "--device", "cpu", "--workers", "1", *extra]


def _command(kind: str, out: Path, store: Path, run: Path) -> list[str]:
    return {"fuse-train": _train(store, out),
            "evaluate": ["evaluate", "--store", str(store), "--checkpoint", str(run / "last.pt"), "--out", str(out),
                         "--device", "cpu"],
            "ablate": _ablate(store, out),
            "finetune": ["finetune", "--init", str(run / "last.pt"), "--out", str(out), "--dataset", "synth",
                         "--root", str(out.parent / "nocorpus"), "--device", "cpu"],
            "prepare": ["prepare", "--dataset", "csv", "--manifest", str(_listing(out.parent)), "--out", str(out),
                        "--workers", "1", "--no-progress"],
            "demo": ["demo", "--out", str(out), "--no-progress", "--videos", "24"],
            "export": ["export", str(store), "--out", str(out)],
            "synth": ["synth", str(out), "--videos", "4"]}[kind]


def _listing(folder: Path) -> Path:
    """A CSV manifest of one video (the folder checks come before any video is read)."""
    path = folder / "listing.csv"
    path.write_text("path,label\nv.mp4,a\n")
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


FOLDERS = ("fuse-train", "evaluate", "ablate", "finetune", "prepare", "demo", "export", "synth")


@pytest.mark.parametrize("kind", FOLDERS)
def test_a_folder_of_other_files_is_refused_untouched(store, run, tmp_path, kind):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')  # a user's file of the same name
    before = _snapshot(out)
    r = CliRunner().invoke(main, _command(kind, out, store, run))
    one_line_error(r, f"was not written by cavnet {kind}")
    assert _snapshot(out) == before


@pytest.mark.parametrize("kind", FOLDERS[1:])
def test_a_training_run_folder_is_never_written_by_another_command(store, run, tmp_path, kind):
    before = _snapshot(run)
    r = CliRunner().invoke(main, _command(kind, run, store, run))
    one_line_error(r, "holds the output of cavnet fuse-train")
    assert _snapshot(run) == before  # its run.json and checkpoints too


def test_a_folder_goes_on_with_the_same_command_and_is_marked(store, run, tmp_path):
    assert read_marker(run)["command"] == "fuse-train"
    out = tmp_path / "eval"
    for _ in range(2):  # evaluate again into its own folder
        r = CliRunner().invoke(main, _command("evaluate", out, store, run))
        assert r.exit_code == 0, r.output
    assert read_marker(out)["command"] == "evaluate" and (out / "metrics.json").exists()
    legacy = tmp_path / "old"  # a run folder of a cavnet before markers: taken over once, then marked
    legacy.mkdir()
    for name in ("config.json", "run.json"):
        (legacy / name).write_text("{}")
    assert CliRunner().invoke(main, _train(store, legacy)).exit_code == 0
    assert read_marker(legacy)["command"] == "fuse-train"


def test_ablate_refuses_a_folder_of_other_settings_and_reruns_a_torn_result(store, tmp_path):
    out = tmp_path / "abl"
    r = CliRunner().invoke(main, _ablate(store, out))
    assert r.exit_code == 0, r.output
    result = out / "runs" / "cavnet" / "seed0" / "result.json"
    first = json.loads(result.read_text())
    for extra in (["--lr", "0.01"], ["--d-model", "32"], ["--seed", "5"]):
        before = _snapshot(out)
        one_line_error(CliRunner().invoke(main, _ablate(store, out, *extra)), "of other inputs or settings")
        assert _snapshot(out) == before
    other = tmp_path / "other.h5"
    make_store(other, videos=12, id_prefix="other")  # other videos (a copy of the same store is the same work)
    one_line_error(CliRunner().invoke(main, _ablate(other, out)), "(store differs)")
    result.write_text(result.read_text()[:10])  # torn by a kill
    r = CliRunner().invoke(main, _ablate(store, out))
    assert r.exit_code == 0 and "1 to run, 0 done before" in r.output, r.output
    assert json.loads(result.read_text())["top1"] == pytest.approx(first["top1"])  # the same run, done again
    r = CliRunner().invoke(main, _ablate(store, out))
    assert "0 to run, 1 done before" in r.output, r.output


# ------------------------------------------------------------------------------------------- predictions
def test_predict_keeps_every_finished_row_through_ctrl_c(run, tmp_path, monkeypatch):
    import cavnet.finetune.predict as fp
    from cavnet.finetune.predict import Prediction
    from cavnet.pipelines.options import PredictOptions
    from cavnet.pipelines.predict import predict_command

    def stream(self, paths, k=5):
        yield Prediction("a", "a.mp4", "ok", ["x"], [0.9])
        yield Prediction("b", "b\x1b]0;owned\x07.mp4", "missing_file")
        raise KeyboardInterrupt

    monkeypatch.setattr(fp.Predictor, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(fp.Predictor, "stream", stream)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        predict_command([Path("a.mp4")], run / "last.pt", PredictOptions(top_k=1), None, tmp_path / "p.json",
                        tmp_path / "p.csv", lines.append)
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "id,path,status,label_1,score_1" and rows[1] == "a,a.mp4,ok,x,0.9000" and len(rows) == 3
    assert [p["id"] for p in json.loads((tmp_path / "p.json").read_text())] == ["a", "b"]
    assert "\x1b" not in "".join(lines) and "b\\x1b]0;owned\\x07.mp4" in lines[1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_predict_never_writes_over_its_inputs(run, tmp_path, flag):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not a video")
    for target in (video, run / "last.pt"):
        before = target.read_bytes()
        r = CliRunner().invoke(main, ["predict", str(video), "--checkpoint", str(run / "last.pt"), flag, str(target),
                                      "--device", "cpu"])
        one_line_error(r, "is an input of this command")
        assert target.read_bytes() == before


# ------------------------------------------------------------------------------------- terminal escaping
EVIL = "clip\x1b]0;owned\x07\x1b[2J"


@pytest.mark.parametrize("argv", [
    ["evaluate", "--store", "{p}", "--checkpoint", "{p}"],
    ["predict", "x.mp4", "--checkpoint", "{p}"],
    ["fuse-train", "--store", "{p}", "--out", "o"],
    ["check", "{p}"],
    ["export", "{p}", "--out", "o"],
    ["finetune", "--init", "{p}", "--out", "o"],
    ["extract", "--dataset", "csv", "--manifest", "{p}", "--out", "o.h5"],
    ["probe", "--dataset", "csv", "--manifest", "{p}"],
    ["prepare", "--dataset", "csv", "--manifest", "{p}", "--out", "o"],
    ["text", "--store", "{p}"],
    ["ablate", "--store", "{p}", "--out", "o"],
    ["fuse-train", "--store", "{p}", "--out", "o", "--classes", "{p}"],
])
def test_names_from_the_disk_reach_the_terminal_escaped(tmp_path, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = str(tmp_path / EVIL)
    r = CliRunner().invoke(main, [a.replace("{p}", p) for a in argv])
    line = one_line_error(r)
    assert "\x1b" not in r.output and "\x07" not in r.output and "\\x1b]0;owned\\x07" in line


@pytest.mark.parametrize("command", ["probe", "extract"])
def test_a_manifest_path_with_escape_sequences_is_refused_and_shown_escaped(tmp_path, command):
    (tmp_path / "m.csv").write_text(f"path,label\n{tmp_path / EVIL}.mp4,a\n")
    argv = {"probe": ["probe", "--dataset", "csv", "--manifest", str(tmp_path / "m.csv")],
            "extract": ["extract", "--dataset", "csv", "--manifest", str(tmp_path / "m.csv"), "--out",
                        str(tmp_path / "s.h5"), "--device", "cpu", "--no-progress"]}[command]
    r = CliRunner().invoke(main, argv)
    one_line_error(r, "column path holds the control character '\\x1b'")
    assert "\x07" not in r.output and not (tmp_path / "s.h5").exists()


def test_a_checkpoint_whose_backbones_do_not_give_its_features_is_one_line(tmp_path):
    make_store(tmp_path / "narrow.h5", videos=12)  # 32-d visual features, "from" resnext3d-tiny (256-d)
    assert CliRunner().invoke(main, _train(tmp_path / "narrow.h5", tmp_path / "run")).exit_code == 0
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    r = CliRunner().invoke(main, ["predict", str(video), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                                  "--device", "cpu"])
    one_line_error(r, "its visual backbone resnext3d-tiny gives 256-d features, its fusion takes 32-d ones")


# ------------------------------------------------------------------------------------------- text inputs
def _bad_text(tmp_path: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / f"in-{kind}"
    if kind == "latin-1":
        path.write_bytes("caf\xe9\n".encode("latin-1"))
        return path, "is not UTF-8: byte 0xe9 at offset 3"
    if kind == "folder":
        path.mkdir()
        return path, "is a folder"
    os.mkfifo(path)  # opening it would block: it must be refused before
    return path, "is not a regular file"


TEXT_INPUTS = ("predict --labels", "text --templates", "text --descriptions", "extract --manifest", "probe --manifest",
               "prepare --manifest", "evaluate --manifest", "finetune --manifest", "fuse-train --classes",
               "evaluate --classes", "ablate --classes")


def _reading(command: str, path: Path, store: Path, run: Path, out: Path) -> list[str]:
    """``command`` reading the text file ``path`` with the option it names, writing (if at all) to ``out``."""
    return {"predict --labels": ["predict", str(out / "v.mp4"), "--checkpoint", str(run / "last.pt"),
                                 "--labels", str(path), "--device", "cpu"],
            "text --templates": ["text", "--store", str(store), "--add-set", "t", "--templates", str(path)],
            "text --descriptions": ["text", "--store", str(store), "--add-set", "d", "--descriptions", str(path)],
            "extract --manifest": ["extract", "--dataset", "csv", "--manifest", str(path), "--out",
                                   str(out / "o.h5"), "--device", "cpu", "--no-progress"],
            "probe --manifest": ["probe", "--dataset", "csv", "--manifest", str(path)],
            "prepare --manifest": ["prepare", "--dataset", "csv", "--manifest", str(path), "--out", str(out / "o")],
            "evaluate --manifest": ["evaluate", "--dataset", "csv", "--manifest", str(path), "--checkpoint",
                                    str(run / "last.pt"), "--out", str(out / "o"), "--device", "cpu"],
            "finetune --manifest": ["finetune", "--init", str(run / "last.pt"), "--dataset", "csv", "--manifest",
                                    str(path), "--out", str(out / "o"), "--device", "cpu"],
            "fuse-train --classes": _train(store, out / "o", "--classes", str(path)),
            "evaluate --classes": ["evaluate", "--store", str(store), "--checkpoint", str(run / "last.pt"),
                                   "--classes", str(path), "--out", str(out / "o"), "--device", "cpu"],
            "ablate --classes": _ablate(store, out / "o", "--classes", str(path))}[command]


@pytest.mark.parametrize("kind", ["latin-1", "folder", "fifo"])
@pytest.mark.parametrize("command", TEXT_INPUTS)
def test_text_inputs_that_are_not_utf8_text_files_are_refused(store, run, tmp_path, kind, command):
    path, needle = _bad_text(tmp_path, kind)
    before = _snapshot(run)
    one_line_error(CliRunner().invoke(main, _reading(command, path, store, run, tmp_path)), needle)
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o" / "last.pt").exists()
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind", ["latin-1", "duplicate column", "fifo"])
@pytest.mark.parametrize("command", ["probe", "extract", "prepare", "evaluate", "finetune"])
def test_a_kinetics_csv_that_is_not_what_it_claims_is_refused_by_every_reader(run, tmp_path, kind, command):
    root = tmp_path / "k400"
    root.mkdir()
    csv_path = root / "train.csv"
    if kind == "latin-1":
        csv_path.write_bytes("label,youtube_id,time_start,time_end,split\ncaf\xe9,a,0,10,train\n".encode("latin-1"))
        needle = "is not UTF-8: byte 0xe9 at offset"
    elif kind == "duplicate column":
        csv_path.write_text("label,youtube_id,time_start,time_end,label\nx,a,0,10,y\n")
        needle = "names column(s) label twice"
    else:
        os.mkfifo(csv_path)
        needle = "is not a regular file"
    out = tmp_path / "out"
    argv = {"probe": ["probe", "--dataset", "k400", "--root", str(root)],
            "extract": ["extract", "--dataset", "k400", "--root", str(root), "--out", str(out / "s.h5"),
                        "--device", "cpu", "--no-progress"],
            "prepare": ["prepare", "--dataset", "k400", "--root", str(root), "--out", str(out / "p")],
            "evaluate": ["evaluate", "--dataset", "k400", "--root", str(root), "--checkpoint", str(run / "last.pt"),
                         "--split", "train", "--device", "cpu"],
            "finetune": ["finetune", "--init", str(run / "last.pt"), "--dataset", "k400", "--root", str(root),
                         "--out", str(out / "f"), "--device", "cpu"]}[command]
    one_line_error(CliRunner().invoke(main, argv), needle)
    assert not out.exists()


def test_a_video_listed_in_two_splits_is_kept_once_with_a_warning(tmp_path):
    from cavnet.extract.datasets import read_csv_manifest

    (tmp_path / "m.csv").write_text("path,label,split\nv.mp4,a,train\nw.mp4,b,train\nv.mp4,a,val\n")
    with pytest.warns(UserWarning, match=r"1 video\(s\) listed in two splits \(e.g. .*v.mp4 in train and val\)"):
        m = read_csv_manifest(tmp_path / "m.csv")
    assert [(Path(r.path).name, r.split) for r in m.rows] == [("v.mp4", "train"), ("w.mp4", "train")]


@pytest.mark.parametrize("prompt,needle", [("a {label", "is not a template"), ("a {lable}", "no other field ({lable})"),
                                           ("{label} in {place}", "({place})"), ("{0} {label}", "({0})")])
def test_a_prompt_template_with_a_stray_brace_is_refused(tmp_path, prompt, needle):
    (tmp_path / "m.csv").write_text("path,label\nv.mp4,a\n")
    r = CliRunner().invoke(main, ["extract", "--dataset", "csv", "--manifest", str(tmp_path / "m.csv"), "--out",
                                  str(tmp_path / "o.h5"), "--prompt", prompt, "--device", "cpu"])
    one_line_error(r, needle)
    assert not (tmp_path / "o.h5").exists() and MARKER not in os.listdir(tmp_path)


def test_probe_keeps_every_finished_row_through_ctrl_c_in_manifest_order(tmp_path, monkeypatch):
    import contextlib

    import cavnet.pipelines.extract.cluster as cluster
    import cavnet.pipelines.extract.tasks as tasks
    from cavnet.extract.datasets import read_csv_manifest
    from cavnet.pipelines.extract.options import RunOptions
    from cavnet.pipelines.probe import run_probe

    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"v{i}.mp4,a\n" for i in range(8)))
    manifest = read_csv_manifest(tmp_path / "m.csv")

    def out_of_order(client, fn, chunks, args, what, done, echo, window):
        for i in (1, 0, 3):  # chunk 3 finishes before chunk 2: its rows wait for chunk 2's
            done(fn(chunks[i]))
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "dask_client", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(tasks, "stream_tasks", out_of_order)
    with pytest.raises(KeyboardInterrupt):
        run_probe(manifest, RunOptions(shard_size=2), tmp_path / "p.csv", echo=lambda _: None, progress=False)
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("video_id,") and [r.split(",")[0] for r in rows[1:]] == ["v0", "v1", "v2", "v3"]
    assert all(",missing_file," in r for r in rows[1:]) and not list(tmp_path.glob("*.tmp"))


def test_an_evaluation_refused_before_scoring_leaves_no_table(store, run, tmp_path):
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(run / "last.pt"), "--split",
                                  "test", "--out", str(out), "--device", "cpu"])
    one_line_error(r, "split 'test' has no usable labelled videos")
    assert not list(out.glob("predictions_*.csv")) and not (out / "metrics.json").exists()
