"""Use it like a library and a tool: train on AV-Synth, then `cavnet predict` and the Python API on held-out
files (one broken), zero-shot labels, docs/api.md's example, a torch-free `import cavnet`, `cavnet export`
read back row for row, and the run records of fuse-train and evaluate."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cavnet
from cavnet.cli import main
from cavnet.extract.backbones.audio_cnn import TINY_LOGMEL
from cavnet.extract.config import AudioSampling, ClipSampling, ExtractConfig
from cavnet.extract.embed import embed_files
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.store.writer import StoreDims, consolidate, write_shard
from cavnet.extract.synth import synth
from cavnet.extract.text_tables import embed_texts
from cavnet.fuse.train_config import TrainConfig
from cavnet.pipelines.fuse_train import run_fuse_train
from cavnet.extract.datasets import load_manifest

CONFIG = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny",
                       sampling=ClipSampling(clips=2, frames=8, short_side=48, size=48),
                       audio_sampling=AudioSampling(2), logmel=TINY_LOGMEL)
DOCS = Path(__file__).resolve().parents[1] / "docs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """AV-Synth (32 videos, 4 classes), its store (features in-process, real text embeddings), a fuse-train
    run on it, and clips/: three held-out val files (one in a folder named after its label) and a broken one."""
    w = tmp_path_factory.mktemp("api")
    synth(w / "corpus", videos=32, classes=4, seed=1, workers=2)
    m = load_manifest("k400", w / "corpus")
    feats = embed_files([r.path for r in m.rows], CONFIG)
    (w / "work").mkdir()
    write_shard(w / "shard.h5", 0, m.rows, feats, StoreDims(2, 2, 256, 128), CONFIG.to_json())
    consolidate(w / "work" / "store.h5", [w / "shard.h5"], m, StoreDims(2, 2, 256, 128), embed_texts(m, CONFIG),
                CONFIG.to_json(), "test")
    run_fuse_train(w / "work" / "store.h5", w / "work" / "run", TrainConfig(epochs=30, batch_size=8, lr=3e-3,
                                                                               device="cpu"),
                   {"d_model": 32, "heads": 2, "dropout": 0.0}, echo=lambda _: None, progress=False)
    held = [(r, f) for r, f in zip(m.rows, feats) if r.split == "val" and f.status == "ok"][:3]
    clips = w / "clips"
    (clips / held[0][0].label_name).mkdir(parents=True)
    truth = {}
    for i, (row, _) in enumerate(held):
        dst = clips / held[0][0].label_name / "a.mp4" if i == 0 else clips / f"clip{i}.mp4"
        shutil.copy(row.path, dst)
        truth[dst.stem] = row.label_name
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (w / "truth.json").write_text(json.dumps(truth))
    return w


def _truth(work: Path) -> dict[str, str]:
    return json.loads((work / "truth.json").read_text())


def test_cli_predict_names_the_held_out_files_and_reports_the_broken_one(work):
    ckpt = work / "work" / "run" / "best.pt"
    r = CliRunner().invoke(main, ["predict", str(work / "clips"), "--checkpoint", str(ckpt), "--top-k", "2",
                                  "--device", "cpu", "--json", str(work / "p.json"), "--csv", str(work / "p.csv")])
    assert r.exit_code == 0, r.output
    got = {p["id"]: p for p in json.loads((work / "p.json").read_text())}
    assert got["broken"]["status"] not in ("ok", "no_audio", "short_decode") and got["broken"]["labels"] == []
    for vid, label in _truth(work).items():
        assert got[vid]["status"] == "ok" and got[vid]["labels"][0] == label, got[vid]
        assert len(got[vid]["scores"]) == 2 and got[vid]["scores"][0] >= got[vid]["scores"][1]
    rows = list(csv.DictReader(open(work / "p.csv")))
    assert [r["id"] for r in rows] == list(got) and rows[0]["label_1"] == got[rows[0]["id"]]["labels"][0]
    assert "broken.mp4\t" + got["broken"]["status"] in r.output


def test_python_api_predicts_the_same_and_labels_score_zero_shot(work):
    ckpt = cavnet.load_checkpoint(work / "work" / "run" / "best.pt")
    preds = {p.id: p for p in cavnet.predict([work / "clips"], work / "work" / "run" / "best.pt", k=1, device="cpu")}
    assert {vid: preds[vid].top1 for vid in _truth(work)} == _truth(work) and preds["broken"].top1 is None
    names = list(reversed(ckpt.class_names))  # the class texts in another order: still the right label
    zs = {p.id: p for p in cavnet.Predictor(ckpt, "cpu", labels=names).predict([work / "clips"], k=1)}
    assert {vid: zs[vid].top1 for vid in _truth(work)} == _truth(work)
    missing = cavnet.Predictor(ckpt, "cpu").predict([work / "no-such.mp4"])
    assert missing[0].status == "missing_file" and missing[0].labels == []


def test_the_example_of_docs_api_runs(work, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", (DOCS / "api.md").read_text(), re.S).group(1)
    monkeypatch.chdir(work)
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "api_example"})
    out = capsys.readouterr().out
    assert "broken" in out and "a training batch" in out


def test_import_cavnet_imports_no_torch():
    code = "import sys, cavnet; print(sorted(m for m in ('torch', 'av', 'h5py', 'numpy', 'dask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    assert set(cavnet.__all__) <= set(dir(cavnet)) and cavnet.StoreDataset.__name__ == "StoreDataset"


def test_export_npy_reads_back_row_for_row(work, tmp_path):
    store = work / "work" / "store.h5"
    r = CliRunner().invoke(main, ["export", str(store), "--format", "npy", "--out", str(tmp_path / "npy")])
    assert r.exit_code == 0, r.output
    listing = list(csv.DictReader(open(tmp_path / "npy" / "videos.csv")))
    with FeatureStore(store) as s:
        rows = s.rows()
        assert [x["id"] for x in listing] == list(rows.ids) and len(listing) == s.num_videos
    with h5py.File(store, "r") as f:  # what is stored, read with h5py itself (not through cavnet's reader)
        b = {key: f[key][()] for key in ("visual/clips", "visual/mask", "audio/segments", "audio/mask", "text/video")}
    for i, vid in enumerate(rows.ids):
        for key, name in (("visual/clips", "visual"), ("visual/mask", "visual_mask"), ("audio/segments", "audio"),
                          ("audio/mask", "audio_mask"), ("text/video", "text")):
            a = np.load(tmp_path / "npy" / f"{vid}_{name}.npy")
            assert a.dtype == b[key].dtype and np.array_equal(a, b[key][i]), (vid, name)
        assert listing[i]["status"] == rows.statuses[i] and int(listing[i]["label"]) == rows.labels[i]


def test_export_parquet_reads_back_with_pandas(work, tmp_path):
    r = CliRunner().invoke(main, ["export", str(work / "work" / "store.h5"), "--format", "parquet", "--out",
                                  str(tmp_path / "pq")])
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        assert r.exit_code == 2 and "pip install 'cavnet[parquet]'" in r.output, r.output
        pytest.skip("pandas/pyarrow not installed (the optional 'parquet' extra): only the refusal is checked")
    import pandas as pd

    from cavnet.extract.store.export import pooled

    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "pq" / "videos.parquet")
    with FeatureStore(work / "work" / "store.h5") as s:
        b = s.block(0, s.num_videos)
    assert list(df["id"]) == list(b["videos/id"]) and list(df["label"]) == list(b["videos/label"])
    assert np.allclose(np.stack(df["visual"]), pooled(b["visual/clips"], b["visual/mask"]))
    assert np.allclose(np.stack(df["audio"]), pooled(b["audio/segments"], b["audio/mask"]))


def test_fuse_train_and_evaluate_record_their_runs(work, tmp_path):
    store, run = work / "work" / "store.h5", work / "work" / "run"
    rec = json.loads((run / "run.json").read_text())
    with FeatureStore(store) as s:
        assert rec["store"] == str(store.resolve()) and rec["store_fingerprint"] == s.fingerprint()
    assert rec["torch"] == torch.__version__ and rec["av"] and rec["host"] and rec["started"] <= rec["ended"]
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(run / "best.pt"), "--out",
                                  str(tmp_path / "ev"), "--device", "cpu", "--no-progress", "--top-k", "2"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    preds = list(csv.DictReader(open(tmp_path / "ev" / "predictions_val.csv")))
    assert len(preds) == metrics["count"] and set(preds[0]) == {"id", "label", "status", "top_k", "scores"}
    hits = sum(p["top_k"].split("|")[0] == p["label"] for p in preds)
    assert abs(100.0 * hits / len(preds) - metrics["top1"]) < 1e-6
    ev = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert ev["store_fingerprint"] == rec["store_fingerprint"] and ev["ended"] and ev["checkpoint"]


def test_the_extract_progress_bar_counts_only_unusable_videos_as_failed():
    from cavnet.pipelines.extract.tasks import failed_count

    assert failed_count({"ok": 5, "no_audio": 2, "short_decode": 3, "decode_error": 1, "empty_file": 2}) == 3
