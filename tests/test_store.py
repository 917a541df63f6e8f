"""The feature store: shard commit, consolidation in manifest order, reading back, refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cavnet.extract.store import StoreDims, StoreError, VideoFeatures, read_shard, write_shard
from cavnet.extract.store_reader import FeatureStore
from cavnet.extract.manifest import ManifestRow
from store_factory import make_store


def test_round_trip_keeps_order_masks_and_values(tmp_path):
    path = tmp_path / "s.h5"
    manifest = make_store(path, videos=40, classes=4, no_audio_every=7, broken_every=10, shard_size=16)
    with FeatureStore(path) as store:
        rows = store.rows()
        assert list(rows.ids) == [r.video_id for r in manifest.rows]
        assert list(rows.labels) == [r.label for r in manifest.rows]
        assert store.dims == StoreDims(4, 4, 32, 16)
        f = store.read(np.arange(40))
        # video i has 1 + (i // 4) % 4 valid clips; audio-less every 7th; broken every 10th (index 9, 19, ...)
        for i in range(40):
            broken = i % 10 == 9
            assert f.vmask[i].sum() == (0 if broken else 1 + (i // 4) % 4)
            assert f.amask[i].sum() == (0 if broken or i % 7 == 0 else 1 + (i // 4) % 4)
            assert (f.visual[i][~f.vmask[i]] == 0).all()
        assert set(rows.statuses) == {"ok", "no_audio", "decode_error"}
        assert (rows.statuses == "decode_error").sum() == 4
        usable = rows.select("train")
        assert all(rows.statuses[usable] != "decode_error") and all(rows.splits[usable] == "train")
        assert np.isfinite(f.visual).all()


def test_read_of_scattered_rows_matches_full_read(tmp_path):
    path = tmp_path / "s.h5"
    make_store(path, videos=50)
    with FeatureStore(path) as store:
        full = store.read(np.arange(50))
        some = np.array([0, 1, 2, 7, 30, 31, 49])
        part = store.read(some)
        np.testing.assert_array_equal(part.visual, full.visual[some])
        np.testing.assert_array_equal(part.amask, full.amask[some])
        np.testing.assert_array_equal(part.labels, full.labels[some])


def test_shard_commit_is_atomic_and_leaves_no_tmp(tmp_path):
    dims = StoreDims(2, 2, 3, 3)
    rows = [ManifestRow(f"v{i}", f"/x/v{i}.mp4", 0, "a", "train") for i in range(3)]
    feats = [VideoFeatures("ok", "", 1.0, 25.0, np.ones((2, 3)), np.ones((1, 3))) for _ in rows]
    path = tmp_path / "shard-00000.h5"
    write_shard(path, 6, rows, feats, dims, "{}")
    assert not list(tmp_path.glob("*.tmp"))
    data = read_shard(path)
    assert int(data["start"]) == 6 and list(data["videos/id"]) == ["v0", "v1", "v2"]
    assert data["audio/mask"].tolist() == [[True, False]] * 3


def test_shard_write_failure_leaves_nothing(tmp_path):
    dims = StoreDims(2, 2, 3, 3)
    rows = [ManifestRow("v0", "/x/v0.mp4", 0, "a", "train")]
    bad = [VideoFeatures("ok", "", 1.0, 25.0, np.ones((2, 5)), np.ones((1, 3)))]  # wrong width
    with pytest.raises(ValueError):
        write_shard(tmp_path / "shard.h5", 0, rows, bad, dims, "{}")
    assert list(tmp_path.iterdir()) == []


def test_reader_refuses_other_format_versions_and_shards(tmp_path):
    path = tmp_path / "s.h5"
    make_store(path, videos=8)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(StoreError, match="format version 99"):
        FeatureStore(path)
    with pytest.raises(StoreError, match="no such store"):
        FeatureStore(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        FeatureStore(tmp_path / "junk.h5")
