"""Dataset readers: Kinetics-400 copies in their various layouts, and the generic CSV manifest."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from cavnet.extract.synth.avwrite import write_video
from cavnet.extract.datasets import DatasetError, read_csv_manifest, read_k400


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny real file per container (2 frames of 32x32), copied wherever a test needs a video."""
    folder = tmp_path_factory.mktemp("media")
    frames = np.full((2, 32, 32, 3), 128, np.uint8)
    out = {}
    for ext in (".mp4", ".mkv", ".webm"):
        out[ext] = folder / f"tiny{ext}"
        write_video(out[ext], frames, fps=10)
    return out


def _put(media: dict[str, Path], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(media[path.suffix], path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TRAIN_CSV = """label,youtube_id,time_start,time_end,split,is_cc
zumba,aaaaaaaaaaa,14.0,24.0,train,0
abseiling,bbbbbbbbbbb,0,10,train,1
"playing guitar",ccccccccccc,125,135,train,0
"""
VAL_CSV = """label,youtube_id,time_start,time_end,split
abseiling,ddddddddddd,3,13,validate
"""
TEST_CSV = """youtube_id,time_start,time_end,split
eeeeeeeeeee,7,17,test
"""


@pytest.fixture
def k400_flat(tmp_path: Path, media: dict[str, Path]) -> Path:
    """train.csv (with is_cc, float times), validate.csv (split 'validate'), test.csv (no label), flat files."""
    _write(tmp_path / "train.csv", TRAIN_CSV)
    _write(tmp_path / "validate.csv", VAL_CSV)
    _write(tmp_path / "test.csv", TEST_CSV)
    _write(tmp_path / "captions.csv", "video_id,caption\nbbbbbbbbbbb_000000_000010,a person on a rope\n")
    _write(tmp_path / "notes.csv", "a,b\n1,2\n")  # unrelated: ignored
    _put(media, tmp_path / "train" / "aaaaaaaaaaa_000014_000024.mp4")
    _put(media, tmp_path / "train" / "bbbbbbbbbbb_000000_000010.mkv")
    _put(media, tmp_path / "validate" / "ddddddddddd_000003_000013.webm")
    _put(media, tmp_path / "test" / "eeeeeeeeeee_000007_000017.mp4")
    return tmp_path  # ccccccccccc is missing on disk


def test_k400_flat_layout(k400_flat: Path) -> None:
    m = read_k400(k400_flat)
    assert m.classes == ("abseiling", "playing guitar", "zumba")
    ids = [r.video_id for r in m.rows]
    assert ids == ["aaaaaaaaaaa_000014_000024", "bbbbbbbbbbb_000000_000010", "ccccccccccc_000125_000135",
                   "ddddddddddd_000003_000013", "eeeeeeeeeee_000007_000017"]
    assert [r.split for r in m.rows] == ["train", "train", "train", "val", "test"]
    assert [r.label for r in m.rows] == [2, 0, 1, 0, -1]
    assert [r.label_name for r in m.rows] == ["zumba", "abseiling", "playing guitar", "abseiling", ""]
    assert [Path(r.path).suffix for r in m.rows] == [".mp4", ".mkv", ".mp4", ".webm", ".mp4"]
    assert m.rows[3].path == str(k400_flat / "validate" / "ddddddddddd_000003_000013.webm")
    assert m.rows[1].text == "a person on a rope" and m.rows[0].text == ""


def test_k400_missing_file_kept(k400_flat: Path) -> None:
    rows = {r.video_id: r for r in read_k400(k400_flat).rows}
    missing = rows["ccccccccccc_000125_000135"]
    assert not missing.exists
    assert missing.path == str(k400_flat / "train" / "ccccccccccc_000125_000135.mp4")
    assert missing.label_name == "playing guitar"
    assert sum(r.exists for r in rows.values()) == 4


def test_k400_split_selection_keeps_class_ids(k400_flat: Path) -> None:
    full = read_k400(k400_flat)
    val = read_k400(k400_flat, splits=["validate"])
    assert val.classes == full.classes
    assert [(r.video_id, r.label) for r in val.rows] == [("ddddddddddd_000003_000013", 0)]
    assert len(read_k400(k400_flat, splits=("train", "test"))) == 4


def test_k400_per_label_folders_and_annotations(tmp_path: Path, media: dict[str, Path]) -> None:
    _write(tmp_path / "annotations" / "train.csv", TRAIN_CSV)
    _write(tmp_path / "annotations" / "validate.csv", VAL_CSV.replace(",validate", ",val"))
    _put(media, tmp_path / "train" / "playing_guitar" / "ccccccccccc_000125_000135.mkv")
    _put(media, tmp_path / "train" / '"zumba"' / "aaaaaaaaaaa_000014_000024.webm")
    _put(media, tmp_path / "abseiling" / "bbbbbbbbbbb_000000_000010.mp4")  # no split folder
    _put(media, tmp_path / "val" / "abseiling" / "ddddddddddd_000003_000013.mp4")
    m = read_k400(tmp_path)
    assert all(r.exists for r in m.rows)
    paths = {r.video_id: Path(r.path).relative_to(tmp_path).as_posix() for r in m.rows}
    assert paths == {"aaaaaaaaaaa_000014_000024": 'train/"zumba"/aaaaaaaaaaa_000014_000024.webm',
                     "bbbbbbbbbbb_000000_000010": "abseiling/bbbbbbbbbbb_000000_000010.mp4",
                     "ccccccccccc_000125_000135": "train/playing_guitar/ccccccccccc_000125_000135.mkv",
                     "ddddddddddd_000003_000013": "val/abseiling/ddddddddddd_000003_000013.mp4"}
    assert [r.split for r in m.rows] == ["train"] * 3 + ["val"]


def test_k400_explicit_csvs_order_and_duplicates(tmp_path: Path) -> None:
    test_csv = _write(tmp_path / "a" / "my_test.csv", TEST_CSV)
    train_csv = _write(tmp_path / "b" / "my_train.csv", TRAIN_CSV + "yoga,aaaaaaaaaaa,14,24,train,0\n")
    with pytest.warns(UserWarning, match="1 duplicate"):
        m = read_k400(tmp_path, csv_paths=[test_csv, train_csv])
    assert [r.split for r in m.rows] == ["train", "train", "train", "test"]  # splits ordered, CSV order within
    assert m.rows[0].label_name == "zumba"  # the first of the duplicates is kept
    assert "yoga" in m.classes  # but every label of the found CSVs defines the class ids
    assert not any(r.exists for r in m.rows)


def test_k400_errors(tmp_path: Path) -> None:
    _write(tmp_path / "captions.csv", "video_id,caption\nx,y\n")
    with pytest.raises(DatasetError, match="no Kinetics CSV"):
        read_k400(tmp_path)
    bad = _write(tmp_path / "bad.csv", "label,youtube_id,split\nx,y,train\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: missing column\(s\) time_start,time_end"):
        read_k400(tmp_path, csv_paths=[bad])
    bad_time = _write(tmp_path / "t.csv", "label,youtube_id,time_start,time_end,split\nx,y,soon,10,train\n")
    with pytest.raises(DatasetError, match=r"t\.csv:2: time_start 'soon'"):
        read_k400(tmp_path, csv_paths=[bad_time])
    with pytest.raises(DatasetError, match="not a directory"):
        read_k400(tmp_path / "nowhere")
    assert issubclass(DatasetError, ValueError)


def test_csv_manifest(tmp_path: Path, media: dict[str, Path]) -> None:
    clip_a = _put(media, tmp_path / "clips" / "a.mp4")
    _put(media, tmp_path / "other" / "a.mkv")
    absolute = _put(media, tmp_path / "elsewhere" / "z.webm")
    csv_path = _write(tmp_path / "list.csv", "path,label,text,split\n"
                      "clips/a.mp4,dance,someone dances,\n"
                      "other/a.mkv,,,validate\n"
                      f"{absolute},cook,,test\n"
                      "clips/gone.mp4,dance,,train\n"
                      "clips/a.mp4,cook,again,train\n")
    m = read_csv_manifest(csv_path)
    assert m.classes == ("cook", "dance")
    assert [r.video_id for r in m.rows] == ["a", "a_1", "z", "gone", "a_2"]
    assert [r.label for r in m.rows] == [1, -1, 0, 1, 0]
    assert [r.split for r in m.rows] == ["train", "val", "test", "train", "train"]
    assert [r.exists for r in m.rows] == [True, True, True, False, True]
    assert m.rows[0].path == str(clip_a) and m.rows[2].path == str(absolute)
    assert m.rows[0].text == "someone dances" and m.rows[1].text == ""


def test_csv_manifest_root_and_errors(tmp_path: Path, media: dict[str, Path]) -> None:
    clip = _put(media, tmp_path / "data" / "v.mp4")
    csv_path = _write(tmp_path / "lists" / "l.csv", "path\nv.mp4\n")
    m = read_csv_manifest(csv_path, root=tmp_path / "data")
    assert m.rows[0].path == str(clip) and m.rows[0].exists and m.rows[0].label == -1 and m.classes == ()
    with pytest.raises(DatasetError, match=r"l2\.csv: missing column path"):
        read_csv_manifest(_write(tmp_path / "l2.csv", "file,label\nv.mp4,x\n"))
    with pytest.raises(DatasetError, match="not found"):
        read_csv_manifest(tmp_path / "absent.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_csv_manifest(_write(tmp_path / "empty.csv", "path,label\n"))) == 0
