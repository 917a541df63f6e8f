"""Spatial views (issue 25): ``extract --views 3 --flip`` stores left/centre/right crops and their flips,
checked against crops cut from independently decoded frames; fuse-train draws one view per video per
epoch; evaluate averages the class scores over the views (checked by hand), gives bit-identical results
for identical views whatever ``--views`` says, and states the protocol; a store of format 1 (before views)
still trains and evaluates as one view, and is not grown with other views."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import media
from cavnet.cli import main
from cavnet.errors import CavnetError
from cavnet.extract.config import ClipSampling, ExtractConfig, LogMel, SpatialViews
from cavnet.extract.embed import decode_item
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.media.clips import crop_offsets
from cavnet.extract.media.decode import decode_video
from cavnet.extract.store.check import check_store
from cavnet.extract.store.reader import FeatureStore
from cavnet.extract.store.writer import StoreError
from cavnet.fuse.checkpoint import Checkpoint
from cavnet.fuse.data import InMemorySplit, StreamedSplit
from cavnet.fuse.scoring.views import score_views
from store_factory import make_store

W, H, S = 80, 48, 32  # frame width and height, crop size (short side 48: no resize)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """One still random picture shown for 2 s (every frame decodes to nearly the same pixels)."""
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (1, H, W, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("views") / "still.mp4"
    media.write_av(path, np.repeat(picture, 30, axis=0), np.arange(30) / 15.0)
    return path


def _frames(path: Path) -> np.ndarray:
    """(F, H, W, 3) every frame of ``path`` decoded by PyAV on its own (rgb24), no cropping."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_crop_offsets_are_threecrop_along_the_long_side():
    assert crop_offsets(80, 48, 32, 1) == [(8, 24)]
    assert crop_offsets(80, 48, 32, 3) == [(8, 0), (8, 24), (8, 48)]  # left, centre, right
    assert crop_offsets(48, 80, 32, 3) == [(0, 8), (24, 8), (48, 8)]  # top, centre, bottom
    assert crop_offsets(80, 48, 32, 3, turns=2) == [(8, 48), (8, 24), (8, 0)]  # upside down: order as displayed


def test_three_crops_and_flips_match_crops_of_the_decoded_frames(video):
    sampling = ClipSampling(clips=2, frames=4, short_side=H, size=S)
    d = decode_video(str(video), sampling, LogMel(), 0, crops=3)
    assert d.crops.shape == (2, 3, 4, S, S, 3)
    assert np.array_equal(d.clips, d.crops[:, 1])  # the clips are the centre crop
    frames = _frames(video).astype(np.int16)
    for k, (top, left) in enumerate([(8, 0), (8, 24), (8, 48)]):
        want = frames[:, top:top + S, left:left + S]
        for clip in d.crops[:, k].reshape(-1, S, S, 3).astype(np.int16):
            # the frame it came from: the nearest of the independently decoded ones (swscale's planar RGB
            # and PyAV's rgb24 round alike within one level)
            assert np.abs(want - clip).max(axis=(1, 2, 3)).min() <= 1, k
    config = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny", sampling=sampling,
                           views=SpatialViews(crops=3, flip=True))
    row = ManifestRow("still", str(video), 0, "", "train")
    item = decode_item(row, config, views=True)
    views = item.clips.reshape(-1, 6, 4, S, S, 3)
    assert item.views == 6 and np.array_equal(views[:, :3], d.crops)
    assert np.array_equal(views[:, 3:], d.crops[..., ::-1, :])  # horizontal flips, in crop order
    assert decode_item(row, config).clips.shape == (2, 4, S, S, 3)  # fine-tuning and predict: the centre


def test_extract_views_3_flip_stores_every_view_through_the_backbone(video, tmp_path):
    manifest = tmp_path / "m.csv"
    other = tmp_path / "other.mp4"  # a second video (one file in two splits is kept in the first only)
    shutil.copy(video, other)
    manifest.write_text(f"path,label,split\n{video},a,train\n{other},b,val\n")
    out = tmp_path / "s.h5"
    r = CliRunner().invoke(main, ["extract", "--dataset", "csv", "--manifest", str(manifest), "--out", str(out),
                                  "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--clips", "2",
                                  "--segments", "2", "--views", "3", "--flip", "--workers", "1", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert check_store(out).ok, check_store(out).lines()
    with h5py.File(out, "r") as f:
        assert (f.attrs["format_version"], f.attrs["views"], f.attrs["crops"], bool(f.attrs["flip"])) == (2, 6, 3, True)
        views, clips = f["visual/views"][()], f["visual/clips"][()]
    assert views.shape[:3] == (2, 2, 6) and np.array_equal(views[:, :, 1], clips)
    with FeatureStore(out) as store:
        assert (store.views, store.centre_view) == (6, 1)
        config = store.config
        assert np.array_equal(store.read_views(np.array([0, 1])), views.astype(np.float32))
    # the views' features are the backbone's on the views' pixels (computed here, independently)
    from cavnet.extract.clip_input import ClipNormalize
    from cavnet.extract.embed import build_backbones

    item = decode_item(ManifestRow("still", str(video), 0, "", "train"), config, views=True)
    model, _ = build_backbones(config, torch.device("cpu"))
    with torch.no_grad():
        feats = model(ClipNormalize(config.sampling)(torch.from_numpy(item.clips))).numpy()
    k = len(feats) // 6  # the clips the video has (16-frame clips of a 30-frame video)
    assert k >= 1 and np.allclose(feats.reshape(k, 6, -1).astype(np.float16), views[0, :k], atol=2e-2, rtol=1e-2)
    # a store grows only with its own views: asking for another count is one line
    r = CliRunner().invoke(main, ["extract", "--dataset", "csv", "--manifest", str(manifest), "--out", str(out),
                                  "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny", "--clips", "2",
                                  "--segments", "2", "--views", "3", "--workers", "1", "--device", "cpu",
                                  "--no-progress"])
    assert r.exit_code == 2 and "grows only with the views it has" in r.output and "Traceback" not in r.output


def _add_views(path: Path, views: int, same: bool, seed: int = 1) -> None:
    """Give a one-view store ``views`` views (3 crops, flips when 6): copies of its clips (``same``), else the
    clips plus noise on every view but the centre, as extract would write them."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r+") as f:
        clips, mask = f["visual/clips"][()], f["visual/mask"][()]
        v = np.repeat(clips[:, :, None], views, axis=2).astype(np.float32)
        if not same:
            v += rng.normal(scale=0.5, size=v.shape).astype(np.float32) * mask[:, :, None, None]
            v[:, :, 1] = clips
        f["visual/views"] = v.astype(np.float16)
        dims = json.loads(f.attrs["dims"])
        config = json.loads(f.attrs["config"])
        config["views"] = {"crops": 3, "flip": views == 6}
        f.attrs.update(dims=json.dumps({**dims, "views": views}), config=json.dumps(config), views=views, crops=3,
                       flip=views == 6)


def _as_format_1(path: Path) -> None:
    """Rewrite a store the way format 1 laid it out: no views anywhere."""
    with h5py.File(path, "r+") as f:
        dims = json.loads(f.attrs["dims"])
        dims.pop("views")
        config = json.loads(f.attrs["config"])
        config.pop("views")
        for key in ("views", "crops", "flip"):
            del f.attrs[key]
        f.attrs.update(format_version=1, dims=json.dumps(dims), config=json.dumps(config))


def _view_problems(path: Path) -> list[str]:
    """What ``cavnet check`` says of a store's views (the factory's stores have made-up widths)."""
    return [p for p in check_store(path).problems if ("view" in p or "format" in p) and "shard" not in p]


def _train(store: Path, run: Path, *extra: str) -> None:
    r = CliRunner().invoke(main, ["fuse-train", "--store", str(store), "--out", str(run), "--epochs", "2",
                                  "--batch-size", "16", "--d-model", "16", "--device", "cpu", "--no-progress", *extra])
    assert r.exit_code == 0, r.output


def _evaluate(store: Path, ckpt: Path, out: Path, views: str) -> dict:
    r = CliRunner().invoke(main, ["evaluate", "--store", str(store), "--checkpoint", str(ckpt), "--json",
                                  "--views", views, "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_identical_views_give_bit_identical_evaluation_whatever_views_says(tmp_path):
    one, three = tmp_path / "one.h5", tmp_path / "three.h5"
    make_store(one, videos=48)
    make_store(three, videos=48)
    _add_views(three, 3, same=True)
    assert _view_problems(three) == []
    _train(one, tmp_path / "run")
    ckpt = tmp_path / "run" / "best.pt"
    results = {(s.name, v): _evaluate(s, ckpt, tmp_path / f"ev-{s.stem}-{v}", v)
               for s in (one, three) for v in ("all", "centre")}
    preds = {k: (tmp_path / f"ev-{k[0][:-3]}-{k[1]}" / "predictions_val.csv").read_text() for k in results}
    assert len(set(preds.values())) == 1  # the scores, to every printed digit
    strip = [{k: v for k, v in r.items() if k not in ("protocol", "reports")} for r in results.values()]
    assert all(s == strip[0] for s in strip)
    assert results[("three.h5", "all")]["protocol"] == "4 clips x 3 crops"
    assert results[("three.h5", "centre")]["protocol"] == results[("one.h5", "all")]["protocol"] == "4 clips x 1 crop"


def test_evaluation_averages_the_class_scores_of_the_views(tmp_path):
    path = tmp_path / "six.h5"
    make_store(path, videos=48)
    _add_views(path, 6, same=False)
    _train(path, tmp_path / "run", "--train-views", "random")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["protocol"] == {"train": "one of 6 views per video per epoch, drawn at random",
                               "val": "4 clips x 1 crop"}
    ckpt = Checkpoint.load(tmp_path / "run" / "best.pt")
    model = ckpt.fusion_model().eval()
    with FeatureStore(path) as store:
        index = store.rows().select("val", labelled=True)
        f, views = store.read(index), store.read_views(index)
        emb = torch.from_numpy(store.text_set("default").embedding)
        split = InMemorySplit(store, index, "label", views="all")
        got = score_views(model, split, emb, ckpt.head, torch.device("cpu"))
    by_hand = []
    with torch.no_grad():
        for v in range(6):
            out = model(torch.from_numpy(views[:, :, v]), torch.from_numpy(f.vmask), torch.from_numpy(f.audio),
                        torch.from_numpy(f.amask))
            by_hand.append(model.score_classes(out, emb).numpy().astype(np.float64))
    assert not np.allclose(by_hand[0], by_hand[1])  # the views differ, so the average means something
    assert np.allclose(got.scores, np.mean(by_hand, axis=0), atol=1e-5)
    assert np.array_equal(got.labels, f.labels)
    result = _evaluate(path, tmp_path / "run" / "best.pt", tmp_path / "ev", "all")
    assert result["protocol"] == "4 clips x 3 crops x 2 flips"
    top1 = 100.0 * np.mean(np.mean(by_hand, axis=0).argmax(1) == f.labels)
    assert result["top1"] == pytest.approx(top1)


def test_random_train_views_are_drawn_per_video_and_reproducible(tmp_path):
    path = tmp_path / "six.h5"
    make_store(path, videos=48)
    _add_views(path, 6, same=False)
    with FeatureStore(path) as store:
        index = store.rows().select("train", labelled=True)
        views = torch.from_numpy(store.read_views(index))
        random = InMemorySplit(store, index, "label", views="random")
        centre = InMemorySplit(store, index, "label", views="centre")

        def drawn(split, seed):
            batch = next(split.batches(len(index), torch.Generator().manual_seed(seed)))
            order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
            # which view each video got: the one its features equal
            return [int(np.flatnonzero([torch.equal(batch.visual[i], views[j, :, v].float()) for v in range(6)])[0])
                    for i, j in enumerate(order.tolist())]

        first, again, other = drawn(random, 3), drawn(random, 3), drawn(random, 4)
        assert first == again and first != other and len(set(first)) > 1
        assert set(drawn(centre, 3)) == {1}  # --train-views centre
        assert next(random.batches(8)).visual.shape == (8, 4, 32)  # val: the centre view, no generator


def test_a_streamed_split_reads_the_views_an_in_memory_one_holds(tmp_path):
    path = tmp_path / "six.h5"
    make_store(path, videos=48, shard_size=8)
    _add_views(path, 6, same=False)
    with FeatureStore(path) as store:
        index = store.rows().select("train", labelled=True)
        views = torch.from_numpy(store.read_views(index)).float()
        held = InMemorySplit(store, index, "label", views="all")
        streamed = StreamedSplit(store, index, "label", buffer_blocks=1, views="all")
        assert streamed.views == held.views == 6
        for v in (0, 1, 5):  # evaluation's per-view passes: the same rows, the same view, in the same order
            a, b = next(held.batches(len(index), view=v)), next(streamed.batches(len(index), view=v))
            assert torch.equal(a.visual, b.visual) and torch.equal(a.visual, views[:, :, v])
        random = StreamedSplit(store, index, "label", buffer_blocks=2, views="random")
        seen = set()
        for seed in (3, 4):
            for batch in random.batches(7, torch.Generator().manual_seed(seed)):
                for row in batch.visual:  # each video's features are one of its own views
                    hits = (views == row[:, None, :]).all(dim=3).all(dim=1).nonzero()
                    assert len(hits) == 1
                    seen.add(int(hits[0, 1]))
        assert len(seen) > 1  # not always the centre
        assert next(random.batches(len(index))).visual.shape == (len(index), 4, 32)  # no generator: the centre
        assert torch.equal(next(random.batches(len(index))).visual, views[:, :, 1])
    _train(path, tmp_path / "run", "--stream", "--train-views", "random")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["protocol"]["train"] == "one of 6 views per video per epoch, drawn at random"


def test_a_format_1_store_still_trains_evaluates_and_is_not_grown_with_views(tmp_path):
    old = tmp_path / "old.h5"
    manifest = make_store(old, videos=48)
    _as_format_1(old)
    assert _view_problems(old) == []
    with FeatureStore(old) as store:
        assert (store.format_version, store.views) == (1, 1)
        assert store.read_views(np.array([0, 1])).shape == (2, 4, 1, 32)
        with pytest.raises(StoreError, match="format 1, from before spatial views") as err:
            store.require_views(3, "this")
        assert "\n" not in str(err.value)
    _train(old, tmp_path / "run")
    assert _evaluate(old, tmp_path / "run" / "best.pt", tmp_path / "ev", "all")["protocol"] == "4 clips x 1 crop"
    from cavnet.pipelines.extract.growth import plan_store

    with FeatureStore(old) as store:
        config = store.config
    grown = ExtractConfig.from_dict({**config.to_dict(), "views": {"crops": 3, "flip": False}})
    with pytest.raises(CavnetError, match=r"holds 1 view\(s\) \(--views 1\) per clip, this extraction asks 3") as err:
        plan_store(old, grown, manifest)
    assert "\n" not in str(err.value)
    assert plan_store(old, config, manifest).done  # the same views: nothing to do


def test_views_other_than_1_or_3_and_views_with_torchcodec_are_refused():
    with pytest.raises(CavnetError, match="--views must be 1 or 3"):
        SpatialViews(crops=2)
    with pytest.raises(CavnetError, match="needs the pyav decoder"):
        ExtractConfig(decoder="torchcodec", views=SpatialViews(crops=3))
