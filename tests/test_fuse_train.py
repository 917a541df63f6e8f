"""fuse-train and evaluate on small stores written by store_factory: outputs, resume, refusals."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.extract.store.reader import FeatureStore
from cavnet.fuse.data import InMemorySplit, StreamedSplit, text_groups
from cavnet.fuse.train_config import TrainConfig
from cavnet.pipelines.fuse_train import run_fuse_train
from store_factory import make_store

SMALL = {"d_model": 32, "heads": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s.h5"
    make_store(path, videos=120, classes=4, no_audio_every=11, broken_every=17, noise=0.8)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cavnet.cli", *args], capture_output=True, text=True, timeout=300)


def test_fuse_train_then_evaluate_through_the_cli(store, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "3",
                                  "--batch-size", "16", "--d-model", "32", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "curves.png"):
        assert (run / name).exists(), name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert {"loss", "top1", "top5", "mean_class", "temperature", "seconds"} <= set(lines[0])
    config = json.loads((run / "config.json").read_text())
    # 120 rows: every 17th is broken (7 of them), split by i % 3 -> skipped counts are exact
    broken = [i for i in range(120) if i % 17 == 16]
    assert config["skipped_rows"] == {"train": sum(i % 3 != 2 for i in broken), "val": sum(i % 3 == 2 for i in broken)}
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(run / "best.pt"), "--json",
                                  "--out", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    best = max(lines, key=lambda x: x["top1"])
    assert result["top1"] == pytest.approx(best["top1"]) and result["top5"] == pytest.approx(best["top5"])
    assert result["audio_present"]["count"] < result["count"]
    assert (tmp_path / "eval" / "confusion_val.csv").exists() and (tmp_path / "eval" / "per_class_val.csv").exists()


@pytest.mark.slow
def test_fusion_beats_each_single_modality(store, tmp_path):
    tcfg = TrainConfig(epochs=25, batch_size=16, lr=2e-3, device="cpu", seed=0)
    top1 = {}
    for mod in ("av", "v", "a"):
        r = run_fuse_train(store, tmp_path / mod, tcfg, {**SMALL, "modalities": mod}, echo=lambda _: None,
                           progress=False)
        top1[mod] = r.last["top1"]
    assert top1["av"] > max(top1["v"], top1["a"]) + 15, top1
    assert max(top1["v"], top1["a"]) <= 70, top1  # each modality alone is capped near 50% by the class design


class _Killed(Exception):
    pass


def _kill_after_epoch(n: int):
    def echo(msg: str) -> None:
        if msg.startswith(f"epoch {n}:"):
            raise _Killed  # the run dies right after epoch n was checkpointed
    return echo


def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(store, tmp_path):
    tcfg = TrainConfig(epochs=3, batch_size=16, device="cpu", seed=3)
    full = run_fuse_train(store, tmp_path / "full", tcfg, SMALL, echo=lambda _: None, progress=False)
    with pytest.raises(_Killed):
        run_fuse_train(store, tmp_path / "cut", tcfg, SMALL, echo=_kill_after_epoch(1), progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    run_fuse_train(store, tmp_path / "cut", tcfg, SMALL, resume=True, echo=lambda _: None, progress=False)
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert x["loss"] == y["loss"] and x["top1"] == y["top1"] and x["temperature"] == y["temperature"]
    assert full.last["loss"] == b[-1]["loss"]


def test_streamed_split_yields_every_row_once(store):
    with FeatureStore(store) as s:
        index = s.rows().select("train")
        streamed = StreamedSplit(s, index, "label", buffer_blocks=1)
        memory = InMemorySplit(s, index, "label")
        gen = torch.Generator().manual_seed(0)
        rows = [b.visual.shape[0] for b in streamed.batches(16, gen)]
        assert sum(rows) == len(index) and all(r == 16 for r in rows[:-1])
        a = sorted(float(b.visual.sum()) for b in streamed.batches(len(index)))
        m = sorted(float(b.visual.sum()) for b in memory.batches(len(index)))
        assert a == pytest.approx(m, rel=1e-3)


def test_text_groups_are_stable_across_calls():
    t = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    t[3] = t[1]
    g = text_groups(t)
    assert g[3] == g[1] and len(set(g.tolist())) == 5
    assert (text_groups(t[[3, 1]]) == g[[3, 1]]).all()


@pytest.mark.parametrize("case", ["empty_split", "one_class", "dims"])
def test_bad_inputs_exit_2_with_one_line(store, tmp_path, case):
    if case == "empty_split":
        with pytest.raises(CavnetError, match="split 'test' has no usable labelled videos"):
            run_fuse_train(store, tmp_path / "r", TrainConfig(epochs=1, val_split="test"), SMALL,
                           echo=lambda _: None, progress=False)
        return
    if case == "one_class":
        one = tmp_path / "one.h5"
        make_store(one, videos=30, classes=4, splits=("train", "val"))
        import h5py
        with h5py.File(one, "a") as f:
            f["videos/label"][...] = 0
        r = cli("fuse-train", "--store", str(one), "--out", str(tmp_path / "r"), "--epochs", "1", "--device", "cpu")
        assert r.returncode == 2 and "single class" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        return
    other = tmp_path / "other.h5"
    make_store(other, videos=30, classes=4, text_dim=16)
    run = tmp_path / "r"
    run_fuse_train(store, run, TrainConfig(epochs=1, device="cpu"), SMALL, echo=lambda _: None, progress=False)
    r = cli("evaluate", "--store", str(other), "--checkpoint", str(run / "best.pt"))
    assert r.returncode == 2 and "does not match" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_device_resident_batches_are_the_host_gather_in_the_same_order(store):
    """The split held on the device gives, batch for batch, the rows a host-side gather of the store gives
    in the epoch generator's order (checked here on the CPU; a GPU holds the same tensors on the card)."""
    from cavnet.fuse.data import InMemorySplit, resident_device

    with FeatureStore(store) as st:
        index = st.rows().select("train")
        split = InMemorySplit(st, index, "label", torch.device("cpu"))
        f = st.read(index)
        order = torch.randperm(len(index), generator=torch.Generator().manual_seed(7)).numpy()
        got = list(split.batches(5, torch.Generator().manual_seed(7)))
        assert resident_device(st, len(index), torch.device("cpu")).type == "cpu"
    assert [len(b) for b in got] == [5] * (len(index) // 5) + ([len(index) % 5] if len(index) % 5 else [])
    rows = np.split(order, range(5, len(order), 5))
    for batch, sel in zip(got, rows):
        assert batch.visual.dtype == torch.float32
        assert np.array_equal(batch.visual.numpy(), f.visual[sel].astype(np.float16).astype(np.float32))
        assert np.array_equal(batch.audio.numpy(), f.audio[sel].astype(np.float16).astype(np.float32))
        assert np.array_equal(batch.labels.numpy(), f.labels[sel]) and np.array_equal(batch.vmask.numpy(), f.vmask[sel])


def test_a_trailing_batch_of_one_video_is_dropped_and_the_schedule_matches(store, tmp_path):
    from cavnet.fuse.run.optim import steps_per_epoch as train_steps

    with FeatureStore(store) as s:
        n = len(s.rows().select("train", labelled=True))
    assert train_steps(n, n - 1) == 1 and train_steps(n, n - 2) == 2 and train_steps(n, n) == 1
    run_fuse_train(store, tmp_path / "r", TrainConfig(epochs=2, batch_size=n - 1, warmup_epochs=0.0, device="cpu"),
                   SMALL, echo=lambda _: None, progress=False)
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["scheduler"]["last_epoch"] == 2
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["videos"] == n - 1 and lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_preset_paper_literal_through_the_cli(store, tmp_path):
    run = tmp_path / "lit"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "1",
                                  "--d-model", "16", "--preset", "paper-literal", "--gate", "set", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    fusion = torch.load(run / "last.pt", weights_only=True)["fusion_config"]
    assert (fusion["heads"], fusion["residual"], fusion["layer_norm"], fusion["out_proj"], fusion["mlp_ratio"],
            fusion["pos_embed"], fusion["time_encoding"], fusion["gate"], fusion["d_model"], fusion["bias"],
            fusion["dropout"], fusion["loss"]) == (1, False, False, False, 0.0, False, "none", "set", 16, False, 0.0,
                                                   "paper")


def test_pretrain_store_may_not_hold_the_targets_val_or_test_videos(store, tmp_path, monkeypatch):
    """--pretrain-store is refused, in one line naming the count, when it is the target store or shares
    video ids with its val/test splits (their captions would be trained on); --allow-overlap lets it be."""
    from cavnet.pipelines.fuse_train import check_pretrain_store

    overlapping, apart = tmp_path / "overlap.h5", tmp_path / "apart.h5"
    make_store(overlapping, videos=12, classes=4, captions=True, labelled=False, seed=5)  # vid00000..vid00011
    make_store(apart, videos=12, classes=4, captions=True, labelled=False, seed=5, id_prefix="cap")
    with FeatureStore(store) as s:
        rows = s.rows()
        held_out = int(np.isin(rows.ids, [f"vid{i:05d}" for i in range(12)])[rows.splits == "val"].sum())
    assert held_out == 4  # every third video of the target is in val
    with pytest.raises(CavnetError, match=f"holds {held_out} videos of the val/test splits"):
        check_pretrain_store(store, overlapping)
    check_pretrain_store(store, apart)  # other videos: fine
    cmd = ["fuse-train", "--store", str(store), "--out", str(tmp_path / "r"), "--epochs", "1", "--d-model", "16",
           "--device", "cpu", "--no-progress", "--pretrain-store", str(store)]
    r = CliRunner().invoke(main, cmd)
    assert r.exit_code == 2 and "is the target store itself" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    import cavnet.pipelines.fuse_train as fuse_train

    def reached(*_a, **_k):
        raise CavnetError("pretraining reached")

    monkeypatch.setattr(fuse_train, "pretrain", reached)
    r = CliRunner().invoke(main, cmd + ["--allow-overlap"])
    assert r.exit_code == 2 and "pretraining reached" in r.output


def test_caption_pretraining_on_another_store_then_labels_starts_from_its_weights_and_temperature(
        store, tmp_path, monkeypatch):
    """--pretrain-store: video-text pretraining on an unlabelled caption store with another class table,
    then label training on the target store from the pretrained weights and temperature."""
    import dataclasses

    from cavnet.fuse.checkpoint import Checkpoint
    from cavnet.fuse.run.fusion import FusionRun, fusion_config_for

    captions = tmp_path / "captions.h5"
    make_store(captions, videos=40, classes=6, captions=True, labelled=False, seed=5, id_prefix="cap")
    seen = {}
    original = FusionRun.start_from

    def spy(self, init, resume, echo):
        start = original(self, init, resume, echo)
        if init is not None:
            seen["state"] = {k: v.clone() for k, v in self.model.state_dict().items()}
            seen["scale"] = float(self.loss_fn.logit_scale.detach())
        return start

    monkeypatch.setattr(FusionRun, "start_from", spy)
    run = tmp_path / "run"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "1",
                                  "--pretrain-store", str(captions), "--pretrain-epochs", "2", "--lr", "1e-2",
                                  "--batch-size", "8", "--d-model", "16", "--text-proj", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    pre = Checkpoint.load(run / "pretrain" / "last.pt")
    assert pre.state.epoch == 2 and len(pre.class_names) == 6 and pre.fusion.text_proj
    assert [json.loads(x)["epoch"] for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not (run / "pretrain" / "best.pt").exists()
    for k, v in pre.model.items():
        torch.testing.assert_close(seen["state"][k], v)
    assert seen["scale"] == pytest.approx(float(pre.loss["logit_scale"]))
    assert seen["scale"] != pytest.approx(float(np.log(1 / 0.07)))  # the temperature was learned
    assert json.loads((run / "config.json").read_text())["pretrain_store"] == str(captions.resolve())
    final = Checkpoint.load(run / "last.pt")
    assert len(final.class_names) == 4
    with FeatureStore(store) as s:  # the class table does not matter for a text-head init
        pre.check_matches_store(dataclasses.asdict(s.dims), s.text_dim, list(s.class_names), "s", as_init=True)
        with pytest.raises(CavnetError, match="num_classes 6 vs 4"):
            pre.check_matches_store(dataclasses.asdict(s.dims), s.text_dim, list(s.class_names), "s")
        assert fusion_config_for(s, {}).num_classes == 4


def test_checkpoint_every_changes_when_files_are_written_not_what_is_trained(store, tmp_path, monkeypatch):
    """checkpoint_every=0 writes last.pt and best.pt once, at the end: the same weights as writing every
    epoch, and best.pt is the best epoch's snapshot, not the final weights."""
    def ckpt(run, name):
        return torch.load(tmp_path / run / name, weights_only=True)

    def metrics(run):
        return [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    tcfg = TrainConfig(epochs=6, batch_size=16, device="cpu", seed=1, lr=5e-3)
    run_fuse_train(store, tmp_path / "every", tcfg, SMALL, echo=lambda _: None, progress=False)
    saved, real_save = [], torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: (saved.append(f), real_save(obj, f, *a, **k))[1])
    run_fuse_train(store, tmp_path / "end", replace(tcfg, checkpoint_every=0), SMALL, echo=lambda _: None,
                   progress=False)
    monkeypatch.undo()
    assert len(saved) == 2  # best.pt and last.pt, once each
    assert metrics("every") == [{**m, "seconds": x["seconds"]} for m, x in zip(metrics("end"), metrics("every"))]
    for name in ("last.pt", "best.pt"):
        a, b = ckpt("every", name), ckpt("end", name)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    best_epoch = max(metrics("end"), key=lambda m: (m["top1"], -m["epoch"]))["epoch"]
    assert ckpt("end", "best.pt")["epoch"] == best_epoch < 6  # held in memory while training went on
    best, last = ckpt("end", "best.pt")["model"], ckpt("end", "last.pt")["model"]
    assert not all(torch.equal(best[k], last[k]) for k in last)


def test_eval_every_0_scores_val_once_and_trains_the_same(store, tmp_path):
    """eval_every=0 (what ablate runs use) scores val only after the last epoch: the same last metrics and
    weights as scoring every epoch, one scored line in metrics.jsonl, and curves.png still drawn."""
    tcfg = TrainConfig(epochs=4, batch_size=16, device="cpu", seed=2)
    every = run_fuse_train(store, tmp_path / "every", tcfg, SMALL, echo=lambda _: None, progress=False)
    lines = []
    once = run_fuse_train(store, tmp_path / "once", replace(tcfg, eval_every=0, checkpoint_every=0), SMALL,
                          echo=lines.append, progress=False)
    assert {k: once.last[k] for k in ("loss", "top1", "top5", "mean_class")} == \
        {k: every.last[k] for k in ("loss", "top1", "top5", "mean_class")}
    rows = [json.loads(x) for x in (tmp_path / "once" / "metrics.jsonl").read_text().splitlines()]
    assert [("top1" in r) for r in rows] == [False, False, False, True]
    assert lines[-1].startswith("epoch 4: loss") and "val top-1" in lines[-1] and "val" not in lines[-2]
    a, b = (torch.load(tmp_path / run / "last.pt", weights_only=True)["model"] for run in ("every", "once"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "once" / "curves.png").stat().st_size > 0
