"""finetune --end-to-end on a tiny AV-Synth corpus: weights that move (and those that must not), falling
loss, exact resume, two-process torchrun on gloo, raw-video evaluation that matches the store's."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.finetune.augment import AugmentConfig, augment_clips, crop_box, train_sampling
from cavnet.extract.backbones import create_backbone
from cavnet.extract.backbones.audio_cnn import TINY_LOGMEL
from cavnet.extract.config import AudioSampling, ClipSampling, ExtractConfig
from cavnet.extract.store.writer import StoreDims, TextTables, consolidate, write_shard
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.synth import synth
from cavnet.fuse.loss import ContrastiveLoss
from cavnet.fuse.train_config import TrainConfig
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.extract.embed import BatchEmbedder, decode_item
from cavnet.extract.embed import BACKBONE_SEED
from cavnet.pipelines.finetune import run_finetune
from cavnet.finetune.build import backbones_from, build_avnet
from cavnet.finetune.config import FinetuneConfig
from cavnet.finetune.data import VideoClips, collate
from cavnet.pipelines.fuse_train import run_fuse_train
from cavnet.extract.datasets import Corpus, load_manifest

SAMPLING = ClipSampling(clips=2, frames=8, short_side=48, size=48)
CONFIG = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny", sampling=SAMPLING,
                       audio_sampling=AudioSampling(2), logmel=TINY_LOGMEL)
QUIET = dict(echo=lambda _: None, progress=False)


def _extract(root: Path, out: Path, text_dim: int = 16) -> None:
    """A store of ``root`` made with extraction's own pieces (decode_item, BatchEmbedder seeded as every
    extraction worker seeds it), in this process: no Dask cluster to start. Random ``text_dim`` texts."""
    m = load_manifest("k400", root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BACKBONE_SEED)
        embedder = BatchEmbedder(CONFIG, "cpu", 8)
    feats = {}
    for i, row in enumerate(m.rows):
        feats.update(embedder.add(i, decode_item(row, CONFIG)))
    feats.update(embedder.flush())
    dims = StoreDims(2, 2, 256, 128)
    shard = out.parent / f"shard-{out.stem}.h5"
    write_shard(shard, 0, m.rows, [feats[i] for i in range(len(m))], dims, CONFIG.to_json())
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(m.classes), text_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    video = np.stack([emb[r.label] if r.label >= 0 else np.zeros(text_dim, np.float32) for r in m.rows])
    consolidate(out, [shard], m, dims, TextTables(m.classes, list(m.classes), emb, video, "test"), CONFIG.to_json(),
                "test")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("avsynth")
    synth(root, videos=16, classes=4, seed=1, workers=2)
    return root


@pytest.fixture(scope="module")
def init(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(store, fuse-train best.pt) of the corpus; dropout 0 so two processes can match one exactly."""
    work = tmp_path_factory.mktemp("fuse")
    _extract(corpus, work / "s.h5")
    run_fuse_train(work / "s.h5", work / "run", TrainConfig(epochs=12, batch_size=8, lr=3e-3, device="cpu"),
                   {"d_model": 32, "heads": 2, "dropout": 0.0}, **QUIET)
    return work / "s.h5", work / "run" / "best.pt"


def _cfg(init_path: Path, **kw) -> FinetuneConfig:
    base = dict(init=str(init_path), end_to_end=True, batch_size=4, lr=1e-3, backbone_lr=1e-3, decode_workers=0,
                device="cpu", warmup_epochs=0.0)
    return FinetuneConfig(**{**base, **kw})


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "steps.jsonl").read_text().splitlines()]


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k, v in before.items() if v.dtype.is_floating_point and not torch.equal(v, after[k])}


def test_one_step_moves_only_the_unfrozen_backbone_weights(corpus, init, tmp_path):
    state = Checkpoint.load(init[1])
    visual0, audio0 = (m.state_dict() for m in backbones_from(state, CONFIG))
    run_finetune(_cfg(init[1], freeze_until="layer2", max_steps=1, freeze_bn=False), Corpus("k400", corpus),
                 tmp_path / "e2e", eval_init=False, **QUIET)
    after = Checkpoint.load(tmp_path / "e2e" / "last.pt")
    record = json.loads((tmp_path / "e2e" / "run.json").read_text())
    assert record["root"] == str(Path(corpus).resolve()) and record["ended"] and record["torch"] == torch.__version__
    moved = {k.split(".")[0] for k in _changed(visual0, after.visual)}
    assert moved == {"layer3", "layer4"}, moved  # stem, layer1, layer2: weights and BN statistics untouched
    assert _changed(audio0, after.audio) and after.state.step == 1
    assert _changed(state.model, after.model)

    run_finetune(_cfg(init[1], end_to_end=False, max_steps=1), Corpus("k400", corpus), tmp_path / "frozen",
                 eval_init=False, **QUIET)
    frozen = Checkpoint.load(tmp_path / "frozen" / "last.pt")
    assert not _changed(visual0, frozen.visual) and not _changed(audio0, frozen.audio)
    assert _changed(state.model, frozen.model)


def _train_set_loss(ckpt: Path, corpus: Path) -> float:
    """The contrastive loss of the whole training split as one batch (clips sampled as for evaluation),
    above its floor: with k videos of a class in the batch, each row's best is log k."""
    state = Checkpoint.load(ckpt)
    net = build_avnet(state, torch.device("cpu"))
    loss_fn = ContrastiveLoss()
    loss_fn.load_state_dict(state.loss)
    rows = [r for r in load_manifest("k400", corpus).rows if r.split == "train" and r.exists]
    batch = collate([item for item in VideoClips(rows, CONFIG) if len(item.clips)], CONFIG)
    with torch.no_grad():
        out = net(batch.clips, batch.vmask, batch.examples, batch.amask)
        loss = float(loss_fn(out, state.class_embedding[batch.labels], batch.labels))
    same = (batch.labels[:, None] == batch.labels[None, :]).sum(dim=1).float()
    return loss - float(same.log().mean())


@pytest.mark.slow
def test_loss_goes_down_over_a_few_dozen_steps(corpus, init, tmp_path):
    run_finetune(_cfg(init[1], epochs=20, max_steps=40, lr=3e-3, backbone_lr=3e-3), Corpus("k400", corpus),
                 tmp_path / "r", eval_init=False, **QUIET)
    losses = _losses(tmp_path / "r")
    assert len(losses) == 40 and np.mean(losses[-13:]) < np.mean(losses[:13]), losses
    before, after = _train_set_loss(init[1], corpus), _train_set_loss(tmp_path / "r" / "last.pt", corpus)
    assert after < 0.8 * before, (before, after)


def test_resume_gives_the_same_next_step_loss(corpus, init, tmp_path):
    cfg = _cfg(init[1], epochs=2, batch_size=2, max_steps=5)
    run_finetune(cfg, Corpus("k400", corpus), tmp_path / "full", eval_init=False, **QUIET)
    cut = FinetuneConfig.from_dict({**cfg.to_dict(), "max_steps": 3})
    run_finetune(cut, Corpus("k400", corpus), tmp_path / "cut", eval_init=False, **QUIET)
    assert Checkpoint.load(tmp_path / "cut" / "last.pt").state.epoch_step == 3  # stopped inside epoch 1
    run_finetune(cfg, Corpus("k400", corpus), tmp_path / "cut", resume=True, **QUIET)
    full, cut_losses = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert len(full) == len(cut_losses) == 5
    assert cut_losses[3:] == pytest.approx(full[3:], rel=1e-5, abs=1e-6)
    other = FinetuneConfig.from_dict({**cfg.to_dict(), "freeze_until": "layer2"})
    with pytest.raises(CavnetError, match="other --freeze-until; resume it with the same options"):
        run_finetune(other, Corpus("k400", corpus), tmp_path / "cut", resume=True, **QUIET)


def _free_port() -> int:
    """A TCP port nobody listens on now (a fixed port collides with a parallel run or a leftover process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_and_write_one_checkpoint(corpus, init, tmp_path):
    args = ["finetune", "--end-to-end", "--dataset", "k400", "--root", str(corpus), "--init", str(init[1]),
            "--batch-size", "4", "--max-steps", "2", "--lr", "1e-3", "--backbone-lr", "1e-3", "--warmup-epochs",
            "0", "--decode-workers", "0", "--device", "cpu", "--no-eval-init", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "cavnet.cli", *args, "--out", str(tmp_path / "two")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == [".cavnet-output.json", "best.pt", "config.json", "last.pt", "metrics.jsonl", "run.json",
                     "steps.jsonl"], files  # the marker: one process claimed the folder
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    one = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    # the same global batches (DistributedSampler interleaves one permutation), gathered for the loss:
    # the second step's loss matches only if the gradients of the first step did
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-4)


# torchrun's processes run this instead of ``-m cavnet.cli``: rank 1's second loss is NaN, rank 0's is finite
ONE_RANK_NAN = """
import os
from cavnet.finetune import run as ft
real, calls = ft.FinetuneRun._loss, []
def poisoned(self, batch):
    calls.append(1)
    loss = real(self, batch)
    return loss * float("nan") if os.environ["RANK"] == "1" and len(calls) == 2 else loss
ft.FinetuneRun._loss = poisoned
from cavnet.cli import main
main(prog_name="cavnet")
"""


@pytest.mark.slow
def test_a_nan_loss_in_one_process_stops_every_process_at_the_same_step(corpus, init, tmp_path):
    """The linear head's loss is per process: one process's NaN must stop the others at that step too (a
    process that stepped on would wait forever in the next all-reduce)."""
    run_fuse_train(init[0], tmp_path / "lin", TrainConfig(epochs=1, batch_size=8, device="cpu"),
                   {"d_model": 32, "heads": 2, "dropout": 0.0, "head": "linear"}, **QUIET)
    (tmp_path / "poison.py").write_text(ONE_RANK_NAN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(tmp_path / "poison.py"), "finetune", "--end-to-end", "--dataset", "k400", "--root", str(corpus),
           "--init", str(tmp_path / "lin" / "last.pt"), "--batch-size", "4", "--max-steps", "3", "--warmup-epochs",
           "0", "--decode-workers", "0", "--device", "cpu", "--no-eval-init", "--no-progress", "--out",
           str(tmp_path / "two")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    stops = [ln for ln in r.stderr.splitlines() if ln.startswith("cavnet: error: training stopped: the loss is nan")]
    assert len(stops) == 2 and all("at epoch 1, step 2 " in ln for ln in stops), r.stderr[-3000:]  # both ranks
    assert r.stderr.count("exitcode  : 2 ") == 2, r.stderr[-3000:]  # each ended as the CLI ends on bad input
    assert len(_losses(tmp_path / "two")) == 1  # step 1 logged; step 2 stepped nothing, in neither process


def test_raw_video_features_and_scores_match_the_store(corpus, init, tmp_path):
    store, ckpt = init
    net = build_avnet(Checkpoint.load(ckpt), torch.device("cpu"))
    with FeatureStore(store) as s:
        rows = s.rows()
        index = rows.select("val")
        f = s.read(index)
    m = load_manifest("k400", corpus)
    batch = collate([VideoClips(m.rows, CONFIG)[int(i)] for i in index], CONFIG)
    with torch.no_grad():
        visual, audio = net.features(batch.clips, batch.vmask, batch.examples, batch.amask)
    assert torch.equal(batch.vmask, torch.from_numpy(f.vmask)) and torch.equal(batch.amask, torch.from_numpy(f.amask))
    assert torch.allclose(visual, torch.from_numpy(f.visual), rtol=2e-3, atol=2e-3)
    assert torch.allclose(audio, torch.from_numpy(f.audio), rtol=2e-3, atol=2e-3)
    by_store = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(ckpt), "--json",
                                         "--out", str(tmp_path / "a"), "--device", "cpu"])
    by_video = CliRunner().invoke(main, ["evaluate", "--dataset", "k400", "--root", str(corpus), "--checkpoint",
                                         str(ckpt), "--json", "--out", str(tmp_path / "b"), "--device", "cpu",
                                         "--decode-workers", "0"])
    listing = tmp_path / "videos.csv"  # the same corpus as a generic CSV (--dataset csv)
    listing.write_text("path,label,split\n" + "".join(f"{r.path},{r.label_name},{r.split}\n" for r in m.rows))
    by_csv = CliRunner().invoke(main, ["evaluate", "--dataset", "csv", "--manifest", str(listing), "--checkpoint",
                                       str(ckpt), "--json", "--out", str(tmp_path / "c"), "--device", "cpu",
                                       "--decode-workers", "0"])
    assert by_store.exit_code == by_video.exit_code == by_csv.exit_code == 0, by_store.output + by_video.output
    a, b, c = (json.loads(r.output) for r in (by_store, by_video, by_csv))
    key = ("count", "top1", "top5")
    assert [a[k] for k in key] == [b[k] for k in key] == [c[k] for k in key]
    # per-modality figures from the videos: the masked passes of the store's features, from the backbones
    for m in ("visual_only", "audio_only"):
        assert [a["modalities"][m][k] for k in key] == [b["modalities"][m][k] for k in key], m
    for m in ("visual_right_fused_wrong", "audio_right_fused_wrong"):
        assert a["modalities"][m] == b["modalities"][m], m
    # the per-video table: a row per video, the same videos and labels from the store and from the videos
    tables = [list(csv.DictReader(open(tmp_path / d / "predictions_val.csv"))) for d in "ab"]
    assert [sorted((r["id"], r["label"], r["status"]) for r in t) for t in tables][0] == \
        sorted((r["id"], r["label"], r["status"]) for r in tables[1]) and len(tables[1]) == b["count"]


def test_evaluate_on_videos_keeps_the_rows_scored_before_ctrl_c(corpus, init, tmp_path, monkeypatch):
    import cavnet.finetune.data as fdata

    real = fdata.eval_loader

    def one_batch_then_ctrl_c(*args, **kwargs):
        yield next(iter(real(*args, **kwargs)))
        raise KeyboardInterrupt

    monkeypatch.setattr(fdata, "eval_loader", one_batch_then_ctrl_c)
    out = tmp_path / "ev"
    r = CliRunner().invoke(main, ["evaluate", "--dataset", "k400", "--root", str(corpus), "--checkpoint",
                                  str(init[1]), "--out", str(out), "--device", "cpu", "--decode-workers", "0",
                                  "--batch-size", "2"])
    assert r.exit_code == 130 and "cavnet: aborted" in r.output, r.output
    rows = list(csv.DictReader(open(out / "predictions_val.csv")))
    assert len(rows) == 2 and all(row["status"] == "ok" and row["top_k"] for row in rows), rows
    assert not (out / "metrics.json").exists() and not list(out.glob("*.tmp"))


def test_finetune_checkpoint_is_evaluated_on_videos_and_refused_on_a_store(corpus, init, tmp_path):
    run_finetune(_cfg(init[1], max_steps=1), Corpus("k400", corpus), tmp_path / "r", eval_init=False, **QUIET)
    ckpt = tmp_path / "r" / "best.pt"
    ok = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ckpt), "--dataset", "k400", "--root", str(corpus),
                                   "--device", "cpu", "--decode-workers", "0"])
    assert ok.exit_code == 0 and "val: " in ok.output, ok.output
    for args, needle in ((["--store", str(init[0])], "fine-tuned its backbones"),
                         ([], "give --store STORE.h5, or --dataset")):
        r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ckpt), *args])
        assert r.exit_code == 2 and needle in r.output, r.output
    r = CliRunner().invoke(main, ["finetune", "--init", str(init[0]), "--out", str(tmp_path / "x"), "--root",
                                  str(corpus)])
    assert r.exit_code == 2 and "not a cavnet checkpoint" in r.output, r.output


def test_augmentation_is_seeded_and_keeps_shapes():
    aug = AugmentConfig()
    wide = train_sampling(ClipSampling(frames=16, size=112, short_side=112), aug)
    assert (wide.frames, wide.size, wide.short_side) == (24, 128, 128)
    clips = np.random.default_rng(0).integers(0, 256, size=(3, 24, 128, 128, 3), dtype=np.uint8)
    a, off_a = augment_clips(clips, 16, 112, aug, np.random.default_rng(7))
    b, off_b = augment_clips(clips, 16, 112, aug, np.random.default_rng(7))
    assert a.shape == (3, 16, 112, 112, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and (off_a == off_b).all() and ((0 <= off_a) & (off_a <= 8)).all()
    rng = np.random.default_rng(1)
    for _ in range(50):
        top, left, h, w = crop_box(128, aug.crop_scale, aug.crop_ratio, rng)
        assert 0 <= top and top + h <= 128 and 0 <= left and left + w <= 128
        assert 0.4 * 128 * 128 * 0.97 <= h * w <= 128 * 128


def test_gradient_checkpointing_keeps_outputs_gradients_and_bn_statistics():
    torch.manual_seed(0)
    plain = create_backbone("resnext3d-tiny").train()
    ckpt = create_backbone("resnext3d-tiny").train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.grad_checkpoint = True
    x = torch.randn(2, 3, 8, 64, 64)
    ya, yb = plain(x), ckpt(x)
    ya.square().sum().backward()
    yb.square().sum().backward()
    assert torch.allclose(ya, yb, atol=1e-5)
    ga, gb = dict(plain.named_parameters()), dict(ckpt.named_parameters())
    assert all(torch.allclose(ga[k].grad, gb[k].grad, rtol=1e-4, atol=1e-5) for k in ga)
    sa, sb = plain.state_dict(), ckpt.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa if "running" in k)


def test_a_trailing_batch_of_one_video_is_dropped_and_the_schedule_counts_without_it(corpus, init, tmp_path):
    from cavnet.finetune.data import EpochSampler, TrainBatches
    from cavnet.fuse.run.optim import steps_per_epoch

    for n, per, world, sizes in ((9, 4, 1, [4, 4]), (10, 4, 1, [4, 4, 2]), (8, 4, 1, [4, 4]), (10, 4, 2, [4, 1])):
        sampler = EpochSampler(list(range(n)), world, 0, 0)
        got = [len(b) for b in TrainBatches(sampler, per, world)]
        assert got == sizes and len(TrainBatches(sampler, per, world)) == len(sizes)  # (10, 4, 2): 2 over both
        assert steps_per_epoch(len(sampler.inner), per, world) == len(sizes)  # fuse-train counts with it too
    n = len([r for r in load_manifest("k400", corpus).rows if r.split == "train"])
    for batch, steps in ((n - 1, 1), (n - 2, 2)):  # a trailing 1 is dropped, a trailing 2 is trained on
        out = tmp_path / f"b{batch}"
        run_finetune(_cfg(init[1], end_to_end=False, batch_size=batch), Corpus("k400", corpus), out, eval_init=False,
                     **QUIET)
        last = Checkpoint.load(out / "last.pt").state
        assert len(_losses(out)) == steps and last.step == steps and last.scheduler["last_epoch"] == steps
        lrs = [json.loads(x)["lr"] for x in (out / "steps.jsonl").read_text().splitlines()]
        assert last.epoch == 1 and last.epoch_step == 0 and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_finetune_tunes_the_sentence_encoder_and_predict_labels_use_it(corpus, tmp_path):
    from cavnet.extract.text import TextEncoder, load_sentence_model
    from cavnet.extract.text_tables import class_prompts
    from cavnet.finetune.predict import Predictor
    from cavnet.fuse.model import SentenceEncoder

    _extract(corpus, tmp_path / "s.h5", text_dim=384)  # the default sentence encoder's width
    run_fuse_train(tmp_path / "s.h5", tmp_path / "fuse", TrainConfig(epochs=2, batch_size=8, device="cpu"),
                   {"d_model": 32, "heads": 2}, **QUIET)
    run_finetune(_cfg(tmp_path / "fuse" / "best.pt", end_to_end=False, max_steps=2, text_encoder_lr=1e-4),
                 Corpus("k400", corpus), tmp_path / "r", eval_init=False, **QUIET)
    ckpt = Checkpoint.load(tmp_path / "r" / "last.pt")
    assert ckpt.text_tuned and ckpt.finetune["text_encoder_lr"] == 1e-4 and ckpt.state.step == 2
    fresh = TextEncoder().model.state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in ckpt.text_encoder.items() if v.is_floating_point())
    m = load_manifest("k400", corpus)
    prompts = class_prompts(m.classes, CONFIG.prompt_template)
    tuned = SentenceEncoder(load_sentence_model(CONFIG.text_model, "cpu", 384, ckpt.text_encoder))
    assert torch.allclose(ckpt.class_embedding, tuned.embed(prompts), atol=1e-5)
    # zero-shot labels are embedded by the tuned encoder too: the checkpoint's own class names give its classes
    p = Predictor(ckpt, device="cpu", labels=list(m.classes))
    assert torch.allclose(p.class_emb, ckpt.class_embedding, atol=1e-5)
    # resume restores the tuned encoder: cut after one step, resumed to two, it ends where the run above did
    cfg = _cfg(tmp_path / "fuse" / "best.pt", end_to_end=False, max_steps=1, text_encoder_lr=1e-4)
    run_finetune(cfg, Corpus("k400", corpus), tmp_path / "cut", eval_init=False, **QUIET)
    run_finetune(FinetuneConfig.from_dict({**cfg.to_dict(), "max_steps": 2}), Corpus("k400", corpus), tmp_path / "cut",
                 resume=True, **QUIET)
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(tmp_path / "r"), rel=1e-5, abs=1e-6)
    resumed = Checkpoint.load(tmp_path / "cut" / "last.pt").text_encoder
    assert all(torch.allclose(resumed[k], v, atol=1e-6) for k, v in ckpt.text_encoder.items())
