"""The trainable sentence encoder (``--text-encoder-lr``): the store keeps the strings it embedded (through
growth too), fuse-train tunes the encoder through the loss and checkpoints what inference needs, 0 leaves
everything as it was, an old store is refused with one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.extract.manifest import Manifest, ManifestRow
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.store.writer import StoreDims, TextTables, VideoFeatures, consolidate, write_shard
from cavnet.extract.text import TextEncoder, load_sentence_model
from cavnet.extract.text_tables import video_strings
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.data import InMemorySplit
from cavnet.fuse.engine import batch_loss
from cavnet.fuse.model import CAVNet, SentenceEncoder
from cavnet.fuse.config import FusionConfig
from cavnet.fuse.train_config import TrainConfig
from cavnet.fuse.run.fusion import tuned_text
from cavnet.pipelines.fuse_train import run_fuse_train
from store_factory import make_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = {"d_model": 32, "heads": 2}
QUIET = dict(echo=lambda _: None, progress=False)
DIMS = StoreDims(4, 4, 32, 16)


def _tcfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "device": "cpu", "warmup_epochs": 0.0, **kw})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """48 videos of 4 classes, 384-d texts (the default sentence encoder's width), each with its caption."""
    path = tmp_path_factory.mktemp("tstore") / "s.h5"
    make_store(path, videos=48, classes=4, text_dim=384, captions=True, shard_size=16)
    return path


@pytest.fixture(scope="module")
def tuned(store, tmp_path_factory):
    """A fuse-train run with the sentence encoder tuned at a (high, for a visible change) lr of 1e-4."""
    out = tmp_path_factory.mktemp("tuned") / "run"
    result = run_fuse_train(store, out, _tcfg(text_encoder_lr=1e-4), SMALL, **QUIET)
    return out, result


def test_video_strings_are_own_text_else_class_prompt_else_empty():
    rows = (ManifestRow("a", "/a.mp4", 0, "x", "train", text="a dog barks"),
            ManifestRow("b", "/b.mp4", 1, "y", "train"), ManifestRow("c", "/c.mp4", -1, "", "test"))
    assert video_strings(Manifest(rows, ("x", "y")), ["prompt x", "prompt y"]) == ["a dog barks", "prompt y", ""]


def _grow(base, out, new: int, start: int) -> list[str]:
    """Grow ``base`` (24 videos of make_store) by ``new`` videos; returns the new videos' strings."""
    with FeatureStore(base) as s:
        old_ids = list(s.rows().ids)
    rows = [ManifestRow(i, f"/data/{i}.mp4", k % 4, f"class {k % 4}", "train") for k, i in enumerate(old_ids)]
    added = [ManifestRow(f"new{k}", f"/data/new{k}.mp4", k % 4, f"class {k % 4}", "val",
                         text=f"a new caption {k}" if k % 2 else "") for k in range(new)]
    manifest = Manifest(tuple(rows + added), tuple(f"class {c}" for c in range(4)))
    rng = np.random.default_rng(start)
    feats = [VideoFeatures("ok", "", 5.0, 25.0, rng.normal(size=(2, 32)).astype(np.float32),
                           rng.normal(size=(2, 16)).astype(np.float32)) for _ in added]
    shard = out.parent / "grow-shard.h5"
    with FeatureStore(base) as s:
        config = s.config.to_json()
    write_shard(shard, 0, added, feats, DIMS, config)
    prompts = [f"a video of class {c}" for c in range(4)]
    strings = video_strings(Manifest(tuple(added), manifest.classes), prompts)
    emb = rng.normal(size=(new, 24)).astype(np.float32)
    texts = TextTables(list(manifest.classes), prompts, rng.normal(size=(4, 24)).astype(np.float32), emb, "t", strings)
    consolidate(out, [shard], manifest, DIMS, texts, config, "test", base=base)
    return strings


def test_the_store_keeps_the_strings_it_embedded_and_growth_copies_them(tmp_path):
    make_store(tmp_path / "s.h5", videos=24, classes=4, dims=DIMS, captions=True, shard_size=8)
    with FeatureStore(tmp_path / "s.h5") as s:
        own = [f"video {i} of class {i % 4}" for i in range(24)]
        assert s.has_video_strings and list(s.video_strings()) == own
        assert list(s.video_strings(np.array([3, 1]))) == [own[3], own[1]]
        assert s.class_prompts() == [f"a video of class {c}" for c in range(4)]
        before = s.video_text()
    new = _grow(tmp_path / "s.h5", tmp_path / "g.h5", 5, 1)
    assert new == ["a video of class 0", "a new caption 1", "a video of class 2", "a new caption 3",
                   "a video of class 0"]
    with FeatureStore(tmp_path / "g.h5") as g:
        assert list(g.video_strings()) == own + new
        assert np.array_equal(g.video_text()[:24], before)  # the base's rows, embeddings and strings alike


def test_a_store_from_before_stored_texts_is_refused_in_one_line_and_stays_so_when_grown(tmp_path):
    make_store(tmp_path / "old.h5", videos=24, classes=4, dims=DIMS, strings=False, shard_size=8)
    _grow(tmp_path / "old.h5", tmp_path / "g.h5", 3, 2)
    for path in (tmp_path / "old.h5", tmp_path / "g.h5"):
        with FeatureStore(path) as s:
            assert not s.has_video_strings
            with pytest.raises(CavnetError, match="predates stored texts.*re-extract it"):
                s.video_strings()
    with h5py.File(tmp_path / "g.h5") as f:
        assert "text/string" not in f


def test_an_old_store_tunes_on_class_prompts_and_refuses_video_texts_in_one_line(tmp_path):
    old = tmp_path / "old.h5"
    make_store(old, videos=24, classes=4, text_dim=384, strings=False, shard_size=8)
    args = ["fuse-train", "--store", str(old), "--epochs", "1", "--device", "cpu", "--text-encoder-lr", "1e-5",
            "--no-progress"]
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "label")])  # label targets: the class prompts
    assert r.exit_code == 0, (r.output, r.exception)
    assert Checkpoint.load(tmp_path / "label" / "last.pt").text_tuned
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "r"), "--targets", "video-text"])
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [x for x in r.output.strip().splitlines() if not x.startswith("random weights")]
    assert len(lines) == 1 and "predates stored texts" in lines[0] and "re-extract" in lines[0], r.output
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(old), "--out", str(tmp_path / "r2"), "--epochs", "1",
                                  "--text-encoder-lr", "-1"])
    assert r.exit_code == 2 and "--text-encoder-lr must be a number >= 0.0" in r.output, r.output


def test_the_sentence_encoder_module_is_the_models_own_embedding_with_gradients():
    texts = ["a video of a person abseiling", "a dog barks twice", "a video of a person abseiling"]
    enc = TextEncoder()
    module = SentenceEncoder(enc.model)
    assert torch.allclose(module.embed(texts), torch.from_numpy(enc.encode(texts)), atol=1e-5)
    module.train()
    out = module(texts)
    assert out.shape == (3, enc.dim) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    out[:, 0].sum().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_the_loss_gradient_reaches_the_encoder_and_video_text_targets_are_the_stored_strings(store):
    tcfg = _tcfg(text_encoder_lr=1e-5, targets="video-text")
    with FeatureStore(store) as s:
        index = s.rows().select("train", labelled=False)
        fcfg = FusionConfig(visual_dim=32, audio_dim=16, text_dim=384, num_classes=4, **SMALL)
        text = tuned_text(s, index, tcfg, fcfg, torch.device("cpu"))
        split = InMemorySplit(s, index, "video-text")
        strings = s.video_strings(index)
    batch = next(split.batches(8))
    rows = [int(np.flatnonzero(split.groups.numpy() == g)[0]) for g in batch.groups.tolist()]
    assert [text.strings[g] for g in batch.groups.tolist()] == [strings[r] for r in rows]
    assert all(t.startswith("video ") for t in text.strings.values())  # the captions, not the class prompts
    model = CAVNet(fcfg)
    from cavnet.fuse.loss import ContrastiveLoss

    loss = batch_loss(model, ContrastiveLoss(), batch, torch.zeros(4, 384), "video-text", text)
    loss.backward()
    grads = [p.grad for p in text.encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_before_its_first_step_the_tuned_text_side_is_the_stored_embeddings(store, tmp_path):
    """On a store whose class embeddings are the encoder's own, the first batch's loss with the encoder
    (no dropout) equals the loss with the stored embeddings."""
    path = tmp_path / "real.h5"
    make_store(path, videos=24, classes=4, text_dim=384, shard_size=8)
    prompts = [f"a video of class {c}" for c in range(4)]
    with h5py.File(path, "a") as f:
        f["classes/embedding"][...] = TextEncoder().encode(prompts)
    tcfg = _tcfg(text_encoder_lr=1e-5)
    fcfg = FusionConfig(visual_dim=32, audio_dim=16, text_dim=384, num_classes=4, **SMALL)
    with FeatureStore(path) as s:
        index = s.rows().select("train")
        text = tuned_text(s, index, tcfg, fcfg, torch.device("cpu"))
        batch = next(InMemorySplit(s, index, "label").batches(8))
        class_emb = torch.from_numpy(s.class_embedding)
    from cavnet.fuse.loss import ContrastiveLoss

    model = CAVNet(fcfg).eval()
    text.encoder.eval()
    frozen = batch_loss(model, ContrastiveLoss(), batch, class_emb, "label")
    tuned = batch_loss(model, ContrastiveLoss(), batch, class_emb, "label", text)
    assert float(tuned.detach()) == pytest.approx(float(frozen.detach()), abs=1e-5) and tuned.requires_grad


def test_tuning_changes_the_encoder_and_the_checkpoint_carries_it(store, tuned):
    out, result = tuned
    ckpt = Checkpoint.load(out / "best.pt")
    assert ckpt.text_tuned and ckpt.train["text_encoder_lr"] == 1e-4
    fresh = TextEncoder().model.state_dict()
    changed = [k for k, v in ckpt.text_encoder.items() if v.is_floating_point() and not torch.equal(v, fresh[k])]
    assert len(changed) > 10, changed
    # its class embeddings are the class prompts through the tuned encoder, not the store's
    with FeatureStore(store) as s:
        prompts, stored = s.class_prompts(), torch.from_numpy(s.class_embedding)
        text_model = s.config.text_model
    encoder = SentenceEncoder(load_sentence_model(text_model, "cpu", 384, ckpt.text_encoder))
    assert torch.allclose(ckpt.class_embedding, encoder.embed(prompts), atol=1e-5)
    assert not torch.allclose(ckpt.class_embedding, stored, atol=1e-2)
    # evaluate scores with them: it reproduces the best epoch's val accuracy
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(out / "best.pt"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["top1"] == pytest.approx(result.best["top1"])


class _StoredEmbeddings(SentenceEncoder):
    """An "encoder" that gives exactly the store's class embeddings for their prompts and cannot drift
    (its one weight enters with a factor 0: a zero gradient, and AdamW keeps a zero weight at zero)."""

    def __init__(self, prompts: list[str], embedding: torch.Tensor) -> None:
        inner = torch.nn.Module()
        inner.zero = torch.nn.Parameter(torch.zeros(()))
        super().__init__(inner)
        self.prompts, self.embedding = prompts, embedding

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.embedding[[self.prompts.index(t) for t in texts]] + 0.0 * self.model.zero


def test_lr_0_is_the_stored_embedding_run_bit_for_bit(store, tmp_path, monkeypatch):
    """text_encoder_lr 0 loads no sentence encoder (loading one fails here), and its run is bit for bit the
    run of the tuned-text path (lr > 0) with an encoder that returns exactly the stored embeddings and never
    changes: two configurations that differ only by the path the text targets take."""
    import cavnet.extract.text as text_module
    import cavnet.fuse.run.fusion as trainer
    from cavnet.fuse.engine import TunedText

    with FeatureStore(store) as s:
        prompts, stored = s.class_prompts(), torch.from_numpy(s.class_embedding)

    def no_loading(*_a, **_k):
        raise AssertionError("text_encoder_lr 0 loaded a sentence encoder")

    monkeypatch.setattr(text_module, "_load", no_loading)
    frozen = run_fuse_train(store, tmp_path / "frozen", _tcfg(), SMALL, **QUIET)
    monkeypatch.setattr(trainer, "tuned_text", lambda *_a: TunedText(_StoredEmbeddings(prompts, stored), prompts, {}))
    path = run_fuse_train(store, tmp_path / "path", _tcfg(text_encoder_lr=1e-4), SMALL, **QUIET)
    assert frozen.last == {**path.last, "seconds": frozen.last["seconds"]}
    ca, cb = (torch.load(tmp_path / x / "last.pt", weights_only=True) for x in ("frozen", "path"))
    assert "text_encoder" not in ca and set(cb["text_encoder"]) == {"zero"}  # the other run did take the path
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    assert torch.equal(ca["class_embedding"], stored) and torch.equal(cb["class_embedding"], stored)


class _Killed(Exception):
    pass


def _kill_after_epoch(n: int):
    def echo(msg: str) -> None:
        if msg.startswith(f"epoch {n}:"):
            raise _Killed
    return echo


def test_resume_restores_the_tuned_encoder(store, tuned, tmp_path):
    out, full = tuned
    with pytest.raises(_Killed):
        run_fuse_train(store, tmp_path / "cut", _tcfg(text_encoder_lr=1e-4), SMALL, echo=_kill_after_epoch(1),
                       progress=False)
    run_fuse_train(store, tmp_path / "cut", _tcfg(text_encoder_lr=1e-4), SMALL, resume=True, **QUIET)
    a = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["loss"], x["top1"]) for x in a] == [(x["loss"], x["top1"]) for x in b]
    ea, eb = (Checkpoint.load(p / "last.pt").text_encoder for p in (out, tmp_path / "cut"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
