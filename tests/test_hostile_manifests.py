"""Manifests validated as they are read (issue 18): a clear error naming file and line, or a warning with a
count; never a silent skip, never a value that passes every shard and then fails consolidation."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cavnet.cli import main
from cavnet.extract.datasets import DatasetError, read_csv_manifest, read_k400
from hostile import one_line_error

HEADER = "label,youtube_id,time_start,time_end,split"
K400_BAD = {  # row -> what the error must say (line 3: the second data row)
    "time_start nan": ("a,id2,nan,10,train", "time_start 'nan' is not a finite time"),
    "time_start inf": ("a,id2,inf,10,train", "time_start 'inf' is not a finite time"),
    "time_end -inf": ("a,id2,0,-inf,train", "time_end '-inf' is not a finite time"),
    "time_start 1e999": ("a,id2,1e999,10,train", "time_start '1e999' is not a finite time"),
    "negative time": ("a,id2,-5,10,train", "time_start '-5' is not a finite time"),
    "reversed times": ("a,id2,20,10,train", "time_end 10 is before time_start 20"),
    "not a number": ("a,id2,ten,20,train", "time_start 'ten' is not a number"),
    "NUL in the id": ("a,id\x002,0,10,train", "column youtube_id holds the control character '\\x00'"),
    "NUL in the label": ("a\x00b,id2,0,10,train", "column label holds the control character '\\x00'"),
    "escape in the split": ("a,id2,0,10,tra\x1bin", "column split holds the control character '\\x1b'"),
}


def _k400(root: Path, rows: list[str], header: str = HEADER, name: str = "train.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join([header, *rows]) + "\n")
    return root


@pytest.mark.parametrize("case", list(K400_BAD))
def test_bad_kinetics_values_name_file_and_line(tmp_path, case):
    row, needle = K400_BAD[case]
    root = _k400(tmp_path / "k", ["a,id1,0,10,train", row])
    with pytest.raises(DatasetError) as failed:
        read_k400(root)
    assert str(failed.value).startswith(f"{root / 'train.csv'}:3: ") and needle in str(failed.value)


@pytest.mark.parametrize("header, missing", [
    ("label,youtube_id,time_start,split", "time_end"),
    ("label,youtube_id,split", "time_start,time_end"),
    ("label,time_start,time_end,split", "youtube_id"),
])
def test_a_kinetics_csv_missing_a_column_is_an_error_not_a_skip(tmp_path, header, missing):
    root = _k400(tmp_path / "k", ["a,id1,0,10,train"])  # one sound CSV ...
    _k400(root, ["a,id2,0,train"], header=header, name="val.csv")  # ... and one missing a column
    with pytest.raises(DatasetError, match=f"val.csv: a Kinetics CSV without column\\(s\\) {missing}"):
        read_k400(root)


def test_a_csv_without_any_kinetics_column_is_not_a_kinetics_csv(tmp_path):
    root = _k400(tmp_path / "k", ["a,id1,0,10,train"])
    (root / "notes.csv").write_text("who,what\nme,this\n")  # e.g. captions.csv or a probe table
    assert [r.video_id for r in read_k400(root).rows] == ["id1_000000_000010"]


def test_duplicate_ids_warn_with_a_count(tmp_path):
    root = _k400(tmp_path / "k", ["a,id1,0,10,train", "a,id1,0,10,train", "b,id1,0,10,train"])
    with pytest.warns(UserWarning, match="2 duplicate video id"):
        assert len(read_k400(root)) == 1


@pytest.mark.parametrize("row, column", [("v\x00.mp4,a", "path"), ("v.mp4,a\x07", "label"),
                                         ("v.mp4,a,x\x00y", "text")])
def test_csv_manifest_control_characters_are_refused(tmp_path, row, column):
    (tmp_path / "m.csv").write_text("path,label,text\nok.mp4,a,fine\tand\ttabs\n" + row + "\n")
    with pytest.raises(DatasetError, match=f"m.csv:3: column {column} holds the control character"):
        read_csv_manifest(tmp_path / "m.csv")


def test_the_cli_reports_a_bad_manifest_in_one_line(tmp_path):
    root = _k400(tmp_path / "k", ["a,id1,nan,10,train"])
    r = CliRunner().invoke(main, ["extract", "--dataset", "k400", "--root", str(root), "--out",
                                  str(tmp_path / "s.h5"), "--visual", "resnext3d-tiny", "--audio", "audio-cnn-tiny"])
    one_line_error(r, f"{root / 'train.csv'}:2: time_start 'nan' is not a finite time")
    assert not (tmp_path / "s.h5.shards").exists()
