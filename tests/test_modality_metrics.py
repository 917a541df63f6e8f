"""Per-modality metrics from one checkpoint (fuse.scoring.modality): fused, audio masked, visual masked, each checked
against masked forwards done here by hand, and the modality confusion on a case with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.metrics import Scores
from cavnet.fuse.scoring.modality import modality_confusion, modality_metrics
from store_factory import make_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("modality")
    store = root / "s.h5"
    make_store(store, videos=96, classes=4, no_audio_every=7, noise=0.8)
    run = root / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "2",
                                  "--batch-size", "16", "--d-model", "32", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    return store, run / "best.pt"


def _by_hand(store_path, ckpt_path):
    """Scores of the val split fused, audio masked and visual masked, forwards written out here."""
    ckpt = Checkpoint.load(ckpt_path)
    model = ckpt.fusion_model().eval()
    with FeatureStore(store_path) as s:
        f = s.read(s.rows().select("val", labelled=True))
        emb = torch.from_numpy(s.text_set("default").embedding)
    v, vm, a, am = (torch.from_numpy(x) for x in (f.visual, f.vmask, f.audio, f.amask))
    none_v, none_a = torch.zeros_like(vm), torch.zeros_like(am)
    out = {}
    with torch.no_grad():
        for key, (vmask, amask) in {"fused": (vm, am), "visual_only": (vm, none_a),
                                    "audio_only": (none_v, am)}.items():
            z = F.normalize(model(v, vmask, a, amask).float(), dim=-1)
            out[key] = (z @ F.normalize(model.encode_text(emb).float(), dim=-1).T).numpy()
    return out, f.labels, f.amask.any(axis=1)


def test_evaluate_reports_each_modality_as_separately_masked_forwards(trained, tmp_path):
    store, ckpt = trained
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(ckpt), "--json",
                                  "--out", str(tmp_path / "eval"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)["modalities"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["modalities"] == m
    scores, labels, audio = _by_hand(store, ckpt)
    for key, s in scores.items():
        top1 = 100.0 * (s.argmax(1) == labels).mean()
        top5 = 100.0 * (np.argsort(-s, 1)[:, :4] == labels[:, None]).any(1).mean()  # 4 classes: top-5 is all
        assert m[key]["top1"] == pytest.approx(top1) and m[key]["top5"] == pytest.approx(top5), key
        assert m[key]["audio_present"]["top1"] == pytest.approx(100.0 * (s[audio].argmax(1) == labels[audio]).mean())
        assert m[key]["audio_present"]["count"] == int(audio.sum()) < len(labels)
    for key, single in (("visual_right_fused_wrong", "visual_only"), ("audio_right_fused_wrong", "audio_only")):
        right = scores[single].argmax(1) == labels
        lost = right & (scores["fused"].argmax(1) != labels)
        assert m[key]["single_right"] == int(right.sum()) and m[key]["fused_wrong"] == int(lost.sum())
    # a video with no audio scores the same with its audio masked: the model's own missing-audio path
    assert np.allclose(scores["visual_only"][~audio], scores["fused"][~audio], atol=1e-5)
    assert set(m["per_class"]) == {f"class {c}" for c in range(4)}
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(ckpt), "--out",
                                  str(tmp_path / "eval2"), "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0 and "visual right, fused wrong" in r.output and "audio only (visual masked)" in r.output


def _onehot(pred, c=3):
    return np.eye(c, dtype=np.float32)[pred]


def test_modality_confusion_on_a_constructed_case():
    labels = np.array([0, 1, 2, 0, 1, 2])
    visual = _onehot([0, 1, 2, 1, 1, 0])  # right on 0, 1, 2, 4
    audio = _onehot([0, 0, 2, 0, 2, 2])   # right on 0, 2, 3, 5
    fused = _onehot([0, 2, 1, 0, 1, 2])   # right on 0, 3, 4, 5
    v = modality_confusion(visual, fused, labels)
    assert v == {"single_right": 4, "fused_wrong": 2, "percent": pytest.approx(50.0)}  # videos 1, 2
    a = modality_confusion(audio, fused, labels)
    assert a == {"single_right": 4, "fused_wrong": 1, "percent": pytest.approx(25.0)}  # video 2
    present = np.array([True, True, False, True, True, True])
    m = modality_metrics({"fused": Scores(fused, labels, present), "visual_only": Scores(visual, labels, present),
                          "audio_only": Scores(audio, labels, present)}, ["a", "b", "c"])
    assert m["visual_right_fused_wrong"]["fused_wrong"] == 2 and m["audio_right_fused_wrong"]["fused_wrong"] == 1
    assert m["fused"]["top1"] == pytest.approx(100 * 4 / 6)
    assert m["fused"]["audio_present"]["top1"] == pytest.approx(100 * 4 / 5)
    assert m["per_class"]["a"] == {"videos": 2, "fused": 100.0, "visual_only": 50.0, "audio_only": 100.0}
    nothing = modality_confusion(_onehot([1, 2, 0, 1, 2, 0]), fused, labels)
    assert nothing["single_right"] == 0 and np.isnan(nothing["percent"])
