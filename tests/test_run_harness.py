"""The run harness fuse-train and fine-tune share: config round trips, the typed checkpoint, log trimming,
and resumes that refuse changed options instead of silently keeping the old ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.finetune.config import AugmentConfig, FinetuneConfig
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.model import CAVNet
from cavnet.fuse.run.folder import RunFolder, trim_jsonl
from cavnet.fuse.run.optim import param_groups
from cavnet.fuse.train_config import TrainConfig
from store_factory import make_store


def test_configs_round_trip_and_refuse_unknown_fields():
    ft = FinetuneConfig(init="x.pt", augment=AugmentConfig(crop_scale=(0.5, 1.0)))
    again = FinetuneConfig.from_dict(json.loads(json.dumps(ft.to_dict())))
    assert again == ft and again.augment.crop_scale == (0.5, 1.0)
    assert TrainConfig.from_dict({"epochs": 3}) == TrainConfig(epochs=3)  # missing keys take the defaults
    with pytest.raises(CavnetError, match="unknown field.*lr_typo.*TrainConfig"):
        TrainConfig.from_dict({"lr_typo": 1})
    with pytest.raises(CavnetError, match="unknown field.*colour.*AugmentConfig"):
        FinetuneConfig.from_dict({"init": "x", "augment": {"colour": 1}})


def test_decay_split_names_groups_and_skips_frozen_and_vectors():
    lin, frozen = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    frozen.requires_grad_(False)
    groups = param_groups([("fusion", lin.parameters(), 1e-3), ("visual", frozen.parameters(), 1e-5)], 0.05)
    assert [(g["name"], len(g["params"]), g["weight_decay"]) for g in groups] == [
        ("fusion.decay", 1, 0.05), ("fusion.no_decay", 1, 0.0)]


def test_the_real_models_optimiser_decays_matrices_and_position_tables_only():
    """fuse-train's AdamW groups, read from the optimiser build_training makes for the default model: the
    position tables are decayed with the matrices (docs/model.md, OptimConfig); biases, LayerNorms, the
    clock's slopes and the temperature are not."""
    from cavnet.fuse.run.fusion import build_training

    fcfg = FusionConfig(visual_dim=8, audio_dim=4, text_dim=6, d_model=8, heads=2, gate_hidden=4, max_len=4)
    model, loss_fn, optimizer, _ = build_training(fcfg, TrainConfig(weight_decay=0.05), 4, torch.device("cpu"))
    name_of = {id(p): n for n, p in [*model.named_parameters(), ("logit_scale", loss_fn.logit_scale)]}
    groups = {g["name"]: ({name_of[id(p)] for p in g["params"]}, g["weight_decay"]) for g in optimizer.param_groups}
    assert set(groups) == {"fusion.decay", "fusion.no_decay"}
    (decay, wd), (no_decay, no_wd) = groups["fusion.decay"], groups["fusion.no_decay"]
    assert (wd, no_wd) == (0.05, 0.0) and not decay & no_decay and decay | no_decay == set(name_of.values())
    assert {"embed_v.pos", "embed_a.pos", "embed_v.proj.weight", "self_v.attn.w_q.weight", "cross_a.ff.fc1.weight",
            "gate.w1.weight", "head.weight"} <= decay
    assert {"embed_v.proj.bias", "embed_v.ln.weight", "self_v.ln_q.bias", "cross_v.time_bias.log_slope",
            "gate.w2.bias", "ln_head.weight", "logit_scale"} <= no_decay


def test_trim_keeps_lines_up_to_the_checkpoint_and_drops_torn_ones(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n{"epo')
    trim_jsonl(log, "epoch", 2)
    assert log.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'


def test_checkpoint_round_trip_and_refusals(tmp_path):
    fcfg = FusionConfig(visual_dim=8, audio_dim=4, text_dim=6, num_classes=2, d_model=8, heads=2)
    ckpt = Checkpoint(model=CAVNet(fcfg).state_dict(), fusion=fcfg, class_names=["a", "b"],
                      class_embedding=torch.zeros(2, 6))
    ckpt.save(tmp_path / "c.pt")
    again = Checkpoint.load(tmp_path / "c.pt")
    assert again.fusion == fcfg and again.class_names == ["a", "b"] and again.state is None
    with pytest.raises(CavnetError, match="classes in another order"):
        again.check_classes(["b", "a"], "the corpus")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CavnetError, match="not a cavnet checkpoint"):
        Checkpoint.load(tmp_path / "other.pt")
    folder = RunFolder(tmp_path / "run", {"metrics.jsonl": "epoch"})
    (tmp_path / "run").mkdir()
    ckpt.save(tmp_path / "run" / "last.pt")
    with pytest.raises(CavnetError, match="no training state"):
        folder.resumable(True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("harness") / "s.h5"
    make_store(path, videos=24, classes=4)
    return path


@pytest.mark.parametrize("changed, option", [(["--lr", "0.01"], "--lr"), (["--d-model", "16"], "--d-model"),
                                             (["--modalities", "v"], "--modalities"), (["--epochs", "3"], "--epochs")])
def test_resume_refuses_changed_options_with_one_line(store, tmp_path, changed, option):
    base = ["fuse-train", "--store", str(store), "--out", str(tmp_path / "r"), "--epochs", "1", "--batch-size", "8",
            "--d-model", "32", "--device", "cpu", "--no-progress"]
    first = CliRunner().invoke(main, base)
    assert first.exit_code == 0, first.output
    config = (tmp_path / "r" / "config.json").read_text()
    r = CliRunner().invoke(main, base + changed + ["--resume"])
    assert r.exit_code == 2 and r.stderr.startswith("cavnet: error:") and len(r.stderr.strip().splitlines()) == 1
    assert option in r.stderr and "resume it with the same options" in r.stderr
    assert (tmp_path / "r" / "config.json").read_text() == config  # the record still says what was run
    again = CliRunner().invoke(main, base + ["--resume"])  # the same options go on (nothing left to do)
    assert again.exit_code == 0, again.output


def test_tensorboard_logs_the_metrics_lines(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "2",
                                  "--batch-size", "8", "--d-model", "32", "--device", "cpu", "--no-progress",
                                  "--tensorboard"])
    assert r.exit_code == 0, r.output
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "top1", "temperature", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(f"metrics/{key}")]
        assert logged == [(x["epoch"], pytest.approx(x[key], rel=1e-6)) for x in lines], key
