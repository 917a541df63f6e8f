"""Class subsets (--classes): the shipped Kinetics-Sounds list on a store whose classes are the official
Kinetics-400 names, trained, recorded in the checkpoint and scored on the subset; unknown names refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.classes import KINETICS_SOUNDS, SubsetStore
from store_factory import make_store


def k400_names() -> tuple[str, ...]:
    from torchvision.models.video import R3D_18_Weights

    return tuple(sorted(R3D_18_Weights.KINETICS400_V1.meta["categories"]))  # class ids: the sorted names


@pytest.fixture(scope="module")
def k400_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("k400") / "s.h5"
    names = k400_names()
    assert len(names) == 400
    make_store(path, videos=1200, classes=400, class_names=names, noise=0.5)
    return path


def test_the_kinetics_sounds_names_are_kinetics_400_names():
    assert set(KINETICS_SOUNDS) <= set(k400_names()) and len(set(KINETICS_SOUNDS)) == len(KINETICS_SOUNDS) == 31


def test_subset_view_reindexes_labels_and_cuts_tables(k400_store):
    with FeatureStore(k400_store) as s:
        view = SubsetStore(s, list(KINETICS_SOUNDS))
        idx = view.rows().select("val")
        f = view.read(idx)
        assert len(idx) == 31 and sorted(f.labels.tolist()) == list(range(31))
        store_labels = s.rows().labels[idx]
        assert [s.class_names[c] for c in store_labels] == [KINETICS_SOUNDS[c] for c in f.labels]
        assert np.array_equal(view.text_set().embedding, s.text_set().embedding[view.ids])
        assert len(view.rows().select("train", labelled=False)) == 62


def test_fuse_train_and_evaluate_on_kinetics_sounds(k400_store, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(k400_store), "--out", str(run), "--epochs", "1",
                                  "--batch-size", "16", "--d-model", "32", "--device", "cpu", "--no-progress",
                                  "--classes", "kinetics-sounds"])
    assert r.exit_code == 0, r.output
    assert "train 62 videos, val 31" in r.output
    ckpt = Checkpoint.load(run / "best.pt")
    assert ckpt.class_names == list(KINETICS_SOUNDS) and ckpt.fusion.num_classes == 31
    r = CliRunner().invoke(main, ["evaluate", "--store", str(k400_store), "--checkpoint", str(run / "best.pt"),
                                  "--json", "--out", str(tmp_path / "eval"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["count"] == 31 and set(m["modalities"]["per_class"]) == set(KINETICS_SOUNDS)


def test_a_checkpoint_of_every_class_is_scored_on_a_subset(k400_store, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(k400_store), "--out", str(run), "--epochs", "1",
                                  "--batch-size", "64", "--d-model", "16", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    from cavnet.pipelines.evaluate import evaluate_command
    from cavnet.pipelines.options import EvaluateOptions

    # no report folder: a 400 x 400 confusion plot is not what this checks
    full = evaluate_command(run / "last.pt", None, EvaluateOptions(device="cpu"), store=k400_store)
    sub = evaluate_command(run / "last.pt", None, EvaluateOptions(device="cpu", classes="kinetics-sounds"),
                           store=k400_store)
    assert full["count"] == 400 and sub["count"] == 31
    # the subset's accuracy is at least the full table's on the same videos (fewer classes to confuse)
    assert set(sub["modalities"]["per_class"]) == set(KINETICS_SOUNDS)
    for name in KINETICS_SOUNDS:
        assert sub["modalities"]["per_class"][name]["fused"] >= full["modalities"]["per_class"][name]["fused"]


def test_an_unknown_class_is_refused_in_one_line(k400_store, tmp_path):
    listed = tmp_path / "classes.txt"
    listed.write_text("# two classes\nplaying bagpipes\nplaying bagpipe\n")
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(k400_store), "--out", str(tmp_path / "run"),
                                  "--epochs", "1", "--device", "cpu", "--no-progress", "--classes", str(listed)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "'playing bagpipe'" in line and "did you mean 'playing bagpipes'" in line


def test_ablate_baseline_rows_use_the_class_subset(tmp_path):
    from cavnet.extract.store.reader import FeatureStore
    from cavnet.fuse.baselines.probe import linear_probe

    store = tmp_path / "noisy.h5"  # noisy enough that the probe errs: its rows tell which table it scored
    make_store(store, videos=240, classes=8, noise=4.0)
    listed = tmp_path / "two.txt"
    listed.write_text("class 2\nclass 5\n")
    r = CliRunner().invoke(main, ["ablate", "--store", str(store), "--out", str(tmp_path / "abl"), "--variants",
                                  "linear-probe", "--preset", "encoders", "--seeds", "1", "--classes", str(listed),
                                  "--device", "cpu", "--workers", "1"])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "abl" / "runs" / "linear-probe" / "seed0" / "result.json").read_text())
    with FeatureStore(store) as s:
        whole = linear_probe(s, "train", "val")
        two = linear_probe(SubsetStore(s, ["class 2", "class 5"]), "train", "val")
    assert two["count"] == 20 and whole["count"] == 80 and whole["top5"] < 100.0
    assert row["top1"] == pytest.approx(two["top1"]) and row["top5"] == 100.0  # 2 classes: top-5 holds both
    assert row["top1"] != pytest.approx(whole["top1"])
