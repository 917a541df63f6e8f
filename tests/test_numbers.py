"""Non-finite numbers never pass silently (docs/reliability.md, "Numbers" and "Checkpoints"):

- a store row with a NaN or inf feature is refused where it is read (``FeatureStore.read``): fuse-train,
  evaluate and ablate stop in one line naming the count and the first video, before any checkpoint or
  metric is written; ``cavnet check`` lists the rows;
- a non-finite loss stops training naming the epoch and the step, the last good checkpoint kept;
- a checkpoint is checked before it is trusted (``fuse.checkpoint.check_fit``): field types, the config's
  size, the weights' shapes against the config, every tensor finite; every command that loads one says
  ``checkpoint X does not fit: ...`` in one line, exit 2.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.extract.files.outputs import MARKER
from cavnet.fuse.checkpoint import Checkpoint
from store_factory import make_store

TRAIN = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny store, a checkpoint trained on it (``run/last.pt``) and a Kinetics-style root."""
    work = tmp_path_factory.mktemp("numbers")
    make_store(work / "s.h5", videos=24)
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(work / "s.h5"), "--out", str(work / "run"),
                                  "--d-model", "16", *TRAIN])
    assert r.exit_code == 0, r.output
    root = work / "k400"
    root.mkdir()
    (root / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nwaving,abc,0,10,train\n")
    (work / "v.mp4").write_bytes(b"\0" * 64)
    return work


def _one_line(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.output, r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cavnet: error:"), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


# ------------------------------------------------------------------------------------------- store rows
# (dataset, row, value): rows 2 and 5 are val, 3 is train (make_store's splits train, train, val)
BAD_ROWS = {"nan-visual-val": ("visual/clips", 2, np.nan), "inf-audio-val": ("audio/segments", 5, np.inf),
            "nan-text-val": ("text/video", 2, np.nan), "nan-visual-train": ("visual/clips", 3, np.nan),
            "neg-inf-visual-train": ("visual/clips", 3, -np.inf)}
STORE_COMMANDS = {
    "fuse-train": (["fuse-train", "--store", "{store}", "--out", "{out}", *TRAIN], "last.pt"),
    "fuse-train-stream": (["fuse-train", "--store", "{store}", "--out", "{out}", "--stream", *TRAIN], "last.pt"),
    "evaluate": (["evaluate", "--store", "{store}", "--checkpoint", "{ckpt}", "--out", "{out}", "--device", "cpu",
                  "--no-progress"], "metrics.json"),
    "ablate": (["ablate", "--store", "{store}", "--out", "{out}", "--epochs", "1", "--seeds", "1", "--variants",
                "cavnet", "--workers", "1"], "results.csv"),
}


TRAIN_ROW = 3  # the one train row of BAD_ROWS: evaluate does not read it
CASES = [(c, i) for c in STORE_COMMANDS for i in BAD_ROWS if not (c == "evaluate" and BAD_ROWS[i][1] == TRAIN_ROW)]


def _poisoned(work: Path, tmp_path: Path, instance: str) -> Path:
    """A copy of the work store with the one bad value of ``instance``."""
    name, row, value = BAD_ROWS[instance]
    store = tmp_path / "bad.h5"
    shutil.copy(work / "s.h5", store)
    with h5py.File(store, "r+") as f:
        f[name][row, 0] = value
    return store


def _invoke(command: str, store: Path, out: Path, work: Path):
    args, _ = STORE_COMMANDS[command]
    return CliRunner().invoke(main, [a.format(store=store, out=out, ckpt=work / "run" / "last.pt") for a in args])


def _check_lists_the_row(store: Path, instance: str) -> None:
    name, row, _ = BAD_ROWS[instance]
    check = CliRunner().invoke(main, ["check", str(store)])
    assert check.exit_code == 1 and "non-finite values" in check.output and (
        name == "text/video" or f"vid{row:05d}" in check.output), check.output


@pytest.mark.parametrize("command, instance", CASES)
def test_a_non_finite_row_is_never_trained_or_scored(work, tmp_path, command, instance):
    store, row = _poisoned(work, tmp_path, instance), BAD_ROWS[instance][1]
    out = tmp_path / "out"
    line = _one_line(_invoke(command, store, out, work))
    assert "1 video(s) with NaN or inf features" in line and f"vid{row:05d}" in line, line
    assert not (out / STORE_COMMANDS[command][1]).exists()
    _check_lists_the_row(store, instance)


@pytest.fixture(scope="module")
def clean_metrics(work, tmp_path_factory) -> dict:
    """evaluate's metrics.json on the work store as it was made (no bad value)."""
    out = tmp_path_factory.mktemp("clean") / "out"
    r = _invoke("evaluate", work / "s.h5", out, work)
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("instance", [i for i in BAD_ROWS if BAD_ROWS[i][1] == TRAIN_ROW])
def test_evaluate_scores_a_store_with_a_bad_train_row_as_the_clean_store(work, tmp_path, clean_metrics, instance):
    """evaluate reads the val split only: a bad train row is not read, and the scores are the clean store's."""
    store, out = _poisoned(work, tmp_path, instance), tmp_path / "out"
    r = _invoke("evaluate", store, out, work)
    assert r.exit_code == 0, (r.output, r.exception)
    got, want = json.loads((out / "metrics.json").read_text()), clean_metrics
    assert math.isfinite(got["top1"]) and got["count"] > 0
    assert (got["top1"], got["top5"], got["count"]) == (want["top1"], want["top5"], want["count"])
    _check_lists_the_row(store, instance)


# ------------------------------------------------------------------------------------------- the loss
def test_a_non_finite_loss_stops_training_naming_epoch_and_step(work, tmp_path, monkeypatch):
    from cavnet.fuse import engine

    real, calls = engine.batch_loss, []

    def poisoned(*a, **kw):  # the 4th step (epoch 2, step 4: 16 train videos in batches of 8) turns NaN
        calls.append(1)
        loss = real(*a, **kw)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(engine, "batch_loss", poisoned)
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(work / "s.h5"), "--out", str(out), "--d-model", "16",
                                  *TRAIN[:1], "3", *TRAIN[2:]])
    line = _one_line(r)
    assert "the loss is nan at epoch 2, step 4" in line and "last.pt keeps the last good weights" in line, line
    kept = Checkpoint.load(out / "last.pt")  # epoch 1's, finite (load checks)
    assert kept.state.epoch == 1 and kept.state.step == 2


def test_nan_weights_are_never_saved(work, tmp_path):
    ckpt = Checkpoint.load(work / "run" / "last.pt")
    key = next(iter(ckpt.model))
    ckpt.model[key] = ckpt.model[key].clone().fill_(float("nan"))
    with pytest.raises(CavnetError, match=f"{key} holds NaN or inf"):
        ckpt.save(tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- checkpoints
def _first(d):
    return next(iter(d["model"]))


def _set(path, value):
    def edit(d):
        *keys, last = path
        for k in keys:
            d = d[k]
        d[last] = value
    return edit


BAD_CHECKPOINTS = {
    "nan-weight": (lambda d: d["model"][_first(d)].view(-1).__setitem__(0, float("nan")), "holds NaN or inf"),
    "inf-class-embedding": (lambda d: d["class_embedding"].view(-1).__setitem__(0, float("inf")),
                            "class_embedding holds NaN or inf"),
    "nan-temperature": (lambda d: [v.fill_(float("nan")) for v in d["loss"].values()], "holds NaN or inf"),
    "shape-wrong": (lambda d: d["model"].__setitem__(_first(d), torch.zeros(3, 5)), "its fusion_config implies"),
    "weight-missing": (lambda d: d["model"].pop(_first(d)), "do not match its fusion_config"),
    "weight-not-tensor": (lambda d: d["model"].__setitem__(_first(d), [1.0, 2.0]), "fusion_config implies"),
    "class-names-ints": (_set(("class_names",), [1, 2, 3, 4]), "class_names is not a list of strings"),
    "class-names-string": (_set(("class_names",), "abcd"), "class_names is not a list of strings"),
    "class-embedding-rows": (lambda d: d.__setitem__("class_embedding", d["class_embedding"][:2]),
                             "class_embedding is not a (4, Dt) float tensor"),
    "class-embedding-width": (lambda d: d.__setitem__("class_embedding", torch.zeros(4, 7)), "text_dim"),
    "huge-d-model": (_set(("fusion_config", "d_model"), 10**7), "FusionConfig.d_model"),
    "huge-parameters": (_set(("fusion_config", "d_model"), 65536), "G parameters"),
    "heads-not-dividing": (_set(("fusion_config", "heads"), 3), "divisible by heads"),
    "dropout-nan": (_set(("fusion_config", "dropout"), float("nan")), "dropout"),
    "epoch-string": (_set(("epoch",), "x"), "epoch is not a count"),
    "store-dims-list": (_set(("store_dims",), [1, 2]), "store_dims is not a mapping"),
    "optimizer-list": (_set(("optimizer",), []), "optimizer is not a state dict"),
}
CKPT_COMMANDS = {
    "evaluate": ["evaluate", "--store", "{store}", "--checkpoint", "{ckpt}", "--out", "{out}", "--device", "cpu"],
    "predict": ["predict", "{video}", "--checkpoint", "{ckpt}", "--device", "cpu", "--csv", "{out}/p.csv"],
    "fuse-train-init": ["fuse-train", "--store", "{store}", "--out", "{out}", "--init", "{ckpt}", *TRAIN],
    "finetune-init": ["finetune", "--init", "{ckpt}", "--out", "{out}", "--root", "{root}", "--device", "cpu"],
    "fuse-train-resume": ["fuse-train", "--store", "{store}", "--out", "{run}", "--resume", *TRAIN],
}


@pytest.mark.parametrize("instance", list(BAD_CHECKPOINTS))
@pytest.mark.parametrize("command", list(CKPT_COMMANDS))
def test_a_checkpoint_is_checked_before_it_is_trusted(work, tmp_path, command, instance):
    edit, needle = BAD_CHECKPOINTS[instance]
    d = torch.load(work / "run" / "last.pt", weights_only=True)
    edit(d)
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "last.pt"
    torch.save(d, ckpt)
    out = tmp_path / "out"
    args = [a.format(store=work / "s.h5", ckpt=ckpt, out=out, root=work / "k400", video=work / "v.mp4", run=run)
            for a in CKPT_COMMANDS[command]]
    if command == "fuse-train-resume":
        shutil.copy(work / "run" / "config.json", run / "config.json")
        shutil.copy(work / "run" / MARKER, run / MARKER)  # the run folder fuse-train wrote
    line = _one_line(CliRunner().invoke(main, args))
    assert f"checkpoint {ckpt} does not fit:" in line and needle in line, line
    assert not out.exists()


def test_the_shapes_are_checked_without_allocating(work):
    from cavnet.fuse.checkpoint import expected_shapes

    ckpt = Checkpoint.load(work / "run" / "last.pt")
    big = type(ckpt.fusion)(**{**ckpt.fusion.to_dict(), "d_model": 4096, "heads": 4})
    shapes = expected_shapes(big)  # a meta-device model: shapes, no memory
    assert shapes["embed_v.proj.weight"] == (4096, ckpt.fusion.visual_dim)
