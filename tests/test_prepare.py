"""``cavnet prepare``: a small Kinetics-layout corpus of several sizes, codecs and damages, prepared once and
extracted; a prepare killed mid-run and resumed; a csv corpus; the dry run; bad arguments.

Tolerance (docs/performance.md): the clips of a prepared file and of its original, both decoded at the prepared
short side (128, crop 112), are within ``PREPARED_TOLERANCE`` grey levels of each other on average (x264 at crf
23, 4:2:0 chroma, the frame size rounded to even; 1.3-2.4 measured here, 0.8-2.5 on AV-Synth pictures), with the
same clip count and times; copied AAC is the same samples.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

import media
from test_reliability_kill import _wait_for  # until an event (lines in the journal); its deadline is a safety net
from cavnet.extract.config import ClipSampling, LogMel, PrepareConfig
from cavnet.extract.datasets import read_k400
from cavnet.extract.media.decode import decode_video
from cavnet.extract.media.transcode import output_size
from cavnet.extract.status import PREPARED
from cavnet.pipelines.extract.options import RunOptions
from cavnet.pipelines.extract.run import run_extract
from cavnet.extract.backbones.pretrained import extract_config
from cavnet.extract.datasets import load_manifest
from cavnet.pipelines.prepare import layout
from cavnet.pipelines.prepare.run import PrepareSource, run_prepare

PREPARED_TOLERANCE = 4.0
SHORT_SIDE = 128
SAMPLING = ClipSampling(clips=2, frames=16, short_side=SHORT_SIDE, size=112)  # decoded at the prepared short side
CONFIG = extract_config("resnext3d-tiny", "audio-cnn-tiny", None, None, "default", "a video of a person {label}",
                        clips=2, segments=2)
# id -> (split, file name or None when missing, what the original is)
CORPUS = {
    "h264hd": ("train", "h264hd.mp4", "H.264 640x360 + AAC (copied)"),
    "hevc": ("train", "hevc.mkv", "HEVC 320x240 in Matroska + AAC"),
    "vp9": ("val", "vp9.webm", "VP9 256x192 in WebM + Opus (copied)"),
    "mpeg4": ("train", "mpeg4.mkv", "MPEG-4 Part 2 352x288 + MP2 (encoded to AAC)"),
    "tiny": ("val", "tiny.mp4", "H.264 96x64, no audio: kept at its size"),
    "portrait": ("train", "portrait.mp4", "H.264 180x320"),
    "cut": ("train", "cut.mkv", "Matroska cut at 70 %: short_decode"),
    "trunc": ("val", "trunc.mp4", "MP4 cut at 50 % (index lost): decode_error"),
    "zero": ("train", "zero.mp4", "0 bytes: empty_file"),
    "noise": ("train", "noise.mp4", "random bytes: decode_error"),
    "audioonly": ("val", "audioonly.mp4", "audio only: no_video"),
    "gone": ("val", None, "listed, not on disk: missing_file"),
}


def _pictures(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """``(count, H, W, 3)`` uint8: moving luminance stripes under a slow colour tint (camera-like: detail in
    brightness, little in colour, which 4:2:0 video keeps at half resolution)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(count):
        lum = 128 + 50 * np.sin((x * (1 + seed % 2) + 3.0 * t) / 23.0) * np.cos((y - 2.0 * t) / 17.0)
        tint = np.stack([25 * np.cos(x / 70.0 + seed), np.zeros_like(x), 25 * np.sin((y + t) / 60.0)], -1)
        frames.append((lum[..., None] + tint).clip(0, 255).astype(np.uint8))
    return np.stack(frames)


def encode(path: Path, size: tuple[int, int], codec: str, audio_codec: str | None, seconds: float = 1.4,
           fps: int = 25, seed: int = 0) -> Path:
    """A textured video in any codec PyAV's wheel encodes, with a tone in ``audio_codec`` (None: no audio)."""
    with av.open(str(path), "w") as container:
        vs = container.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        if codec in ("libx264", "libx265"):
            vs.options = {"preset": "ultrafast"}
        elif codec == "libvpx-vp9":
            vs.options = {"deadline": "realtime", "cpu-used": "8"}
        if codec == "libx265":
            vs.options = {**vs.options, "x265-params": "log-level=error"}
        astream = None
        if audio_codec is not None:
            rate = 48000 if audio_codec == "libopus" else 44100
            astream = container.add_stream(audio_codec, rate=rate)
            astream.layout = "stereo"
        for image in _pictures(int(seconds * fps), size, seed):
            container.mux(vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(vs.encode(None))
        if astream is not None:
            media._encode_audio(container, astream, media.tone(seconds, astream.rate, 330.0, 2), astream.rate)
    return path


def build_k400(root: Path) -> Path:
    """The corpus of CORPUS in a Kinetics layout (``{split}/{id}.ext``, train.csv + validate.csv)."""
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
    f = {vid: root / split / (k400_id(vid) + Path(name).suffix) for vid, (split, name, _) in CORPUS.items() if name}
    encode(f["h264hd"], (640, 360), "libx264", "aac", seed=1)
    encode(f["hevc"], (320, 240), "libx265", "aac", seed=2)
    encode(f["vp9"], (256, 192), "libvpx-vp9", "libopus", seed=3)
    encode(f["mpeg4"], (352, 288), "mpeg4", "mp2", seed=4)
    encode(f["tiny"], (96, 64), "libx264", None, seed=5)
    encode(f["portrait"], (180, 320), "libx264", "aac", seed=6)
    media.truncate(encode(f["cut"], (160, 120), "libx264", "aac"), 0.7)
    media.truncate(encode(f["trunc"], (160, 120), "libx264", "aac"), 0.5)
    media.zero_byte(f["zero"])
    media.random_bytes(f["noise"])
    media.make_audio_only(f["audioonly"], seconds=1.4)
    for split, name in (("train", "train.csv"), ("val", "validate.csv")):
        rows = [f"{'ab'[i % 2]},{vid},0,2,{split}" for i, (vid, (s, _, _)) in enumerate(CORPUS.items()) if s == split]
        (root / name).write_text("label,youtube_id,time_start,time_end,split\n" + "\n".join(rows) + "\n")
    return root


def k400_id(vid: str) -> str:
    return f"{vid}_000000_000002"


def _cluster(local_cluster) -> RunOptions:
    return RunOptions(shard_size=2, scheduler=local_cluster.scheduler.address, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_k400(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory, local_cluster):
    """The corpus prepared once to short side 128 on the shared local cluster, then extracted."""
    out = tmp_path_factory.mktemp("prepared") / "k400-128"
    source = PrepareSource("k400", corpus)
    said: list[str] = []
    summary = run_prepare(load_manifest("k400", corpus), source, PrepareConfig(short_side=SHORT_SIDE),
                          _cluster(local_cluster), out, echo=said.append, progress=False)
    store = out.parent / "store.h5"
    opts = RunOptions(shard_size=len(CORPUS), scheduler=local_cluster.scheduler.address, device="cpu")
    run_extract(load_manifest("k400", out), CONFIG, opts, store, echo=said.append, progress=False)
    return out, summary, store


def _table(out: Path) -> dict[str, dict[str, str]]:
    with open(out / layout.TABLE, newline="") as fh:
        return {r["video_id"]: r for r in csv.DictReader(fh)}


def test_prepared_corpus_extracts_every_id_once_with_the_originals_statuses(corpus, prepared):
    out, summary, store = prepared
    source, target = read_k400(corpus), read_k400(out)
    assert [r.video_id for r in target.rows] == [r.video_id for r in source.rows]  # every id, in order
    assert [r.label for r in target.rows] == [r.label for r in source.rows] and target.classes == source.classes
    with h5py.File(store, "r") as f:
        ids, statuses = list(f["videos/id"].asstr()[()]), list(f["videos/status"].asstr()[()])
    assert sorted(ids) == sorted(set(ids)) == sorted(r.video_id for r in source.rows)
    original = {r.video_id: decode_video(r.path, SAMPLING, LogMel(), 2).status for r in source.rows}
    assert dict(zip(ids, statuses)) == original  # extract on DST says what it says on the source
    table = _table(out)
    assert set(table) == set(original)
    expected_kept = {"cut": "short_decode", "trunc": "decode_error", "zero": "empty_file", "noise": "decode_error",
                     "audioonly": "no_video", "gone": "missing_file"}
    for vid in CORPUS:
        row = table[k400_id(vid)]
        assert row["status"] == expected_kept.get(vid, PREPARED), (vid, row)
        assert (row["status"] == PREPARED) == (original[k400_id(vid)] in ("ok", "no_audio")), vid
        if row["status"] != PREPARED:
            assert row["error"]  # why it was kept: the original is referenced
    assert summary.counts == {PREPARED: 6, "decode_error": 2, "short_decode": 1, "empty_file": 1, "no_video": 1,
                              "missing_file": 1}


def test_prepared_files_are_smaller_mp4_and_the_kept_ones_link_the_originals(corpus, prepared):
    out, _, _ = prepared
    by_id = {r.video_id: r for r in read_k400(out).rows}
    for vid, (split, name, _) in CORPUS.items():
        row = by_id[k400_id(vid)]
        if name is None:
            assert not row.exists
            continue
        original = corpus / split / (k400_id(vid) + Path(name).suffix)
        if _table(out)[k400_id(vid)]["status"] == PREPARED:
            assert row.path == str(out / split / f"{k400_id(vid)}.mp4") and not os.path.islink(row.path)
            with av.open(row.path) as c, av.open(str(original)) as o:
                v, ov = c.streams.video[0], o.streams.video[0]
                assert (v.codec_context.name, c.format.name.split(",")[0]) == ("h264", "mov")
                assert (v.width, v.height) == output_size(ov.width, ov.height, SHORT_SIDE)
                assert min(v.width, v.height) == min(SHORT_SIDE, ov.width - ov.width % 2, ov.height - ov.height % 2)
                assert abs(float(v.average_rate) - float(ov.average_rate)) < 0.05  # frame rate kept
                assert len(c.streams.audio) == len(o.streams.audio)
        else:
            assert os.path.islink(row.path) and os.readlink(row.path) == str(original)


def test_prepared_clips_are_within_the_tolerance_of_the_originals(corpus, prepared):
    out, _, _ = prepared
    for vid in ("h264hd", "hevc", "vp9", "mpeg4", "tiny", "portrait"):
        split, name, _ = CORPUS[vid]
        a = decode_video(str(corpus / split / (k400_id(vid) + Path(name).suffix)), SAMPLING, LogMel(), 2)
        b = decode_video(str(out / split / f"{k400_id(vid)}.mp4"), SAMPLING, LogMel(), 2)
        assert a.clips.shape == b.clips.shape and a.clips.shape[0] == 2, vid
        np.testing.assert_allclose(a.clip_times, b.clip_times, atol=0.02)
        diff = np.abs(a.clips.astype(np.int16) - b.clips).mean()
        assert diff <= PREPARED_TOLERANCE, (vid, diff)
        if vid == "h264hd":  # AAC is copied into the MP4: the same samples
            np.testing.assert_array_equal(a.audio[:len(b.audio)], b.audio[:len(a.audio)])
        elif vid == "vp9":  # Opus is copied too; WebM and MP4 account for its pre-skip apart, by under 1 ms
            n = min(len(a.audio), len(b.audio)) - 16
            assert min(np.abs(a.audio[k:k + n] - b.audio[:n]).max() for k in range(16)) < 0.02  # of a 0.5 tone
        elif a.audio is not None:
            assert abs(len(a.audio) - len(b.audio)) < 0.05 * len(a.audio)


def test_a_finished_prepare_reruns_as_a_no_op(corpus, prepared, local_cluster):
    out, _, _ = prepared
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4") if not p.is_symlink()}
    said: list[str] = []
    summary = run_prepare(load_manifest("k400", corpus), PrepareSource("k400", corpus),
                          PrepareConfig(short_side=SHORT_SIDE), _cluster(local_cluster), out, echo=said.append,
                          progress=False)
    assert (summary.run, summary.skipped) == (0, len(CORPUS))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(Exception, match="another plan .*short_side: recorded 128, asked 256"):
        run_prepare(load_manifest("k400", corpus), PrepareSource("k400", corpus), PrepareConfig(),
                    _cluster(local_cluster), out, echo=said.append, progress=False)


def test_a_killed_prepare_resumes_without_redoing_finished_files(corpus, tmp_path, local_cluster):
    """The client is SIGKILLed (with its local cluster) while file 4 is held open by the hang hook; the rerun
    re-encodes none of the files committed before, and finishes the rest."""
    out = tmp_path / "dst"
    order = [r.video_id for r in read_k400(corpus).rows]
    env = {**os.environ, "CAVNET_FAULT_HANG_ON": order[3], "CAVNET_FAULT_HANG_SECONDS": "300"}
    cmd = [sys.executable, "-m", "cavnet.cli", "prepare", "--root", str(corpus), "--out", str(out), "--short-side",
           str(SHORT_SIDE), "--workers", "1", "--shard-size", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for(lambda: len(layout.read_journal(out)) >= 3, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    done = layout.read_journal(out)
    committed = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.mp4") if not p.is_symlink()}
    assert set(done) == set(order[:3]) and not (out / layout.TABLE).exists()
    said: list[str] = []
    summary = run_prepare(load_manifest("k400", corpus), PrepareSource("k400", corpus),
                          PrepareConfig(short_side=SHORT_SIDE), _cluster(local_cluster), out, echo=said.append,
                          progress=False)
    assert summary.skipped == 3 and summary.run == len(order) - 3
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in committed} == committed  # not redone
    assert set(_table(out)) == set(order) and not list(out.rglob("*.tmp"))


def test_a_csv_corpus_gets_a_manifest_of_the_prepared_files(corpus, tmp_path, local_cluster):
    rows = [("h264hd", "train"), ("tiny", "val"), ("zero", "train")]
    lines = ["path,label,split,text"] + [f"{CORPUS[v][0]}/{k400_id(v)}{Path(CORPUS[v][1]).suffix},{i},{s},clip {v}"
                                         for i, (v, s) in enumerate(rows)]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "dst"
    source = PrepareSource("csv", corpus, tmp_path / "list.csv")
    selected = load_manifest("csv", corpus, tmp_path / "list.csv", splits=("train",))
    summary = run_prepare(selected, source, PrepareConfig(short_side=SHORT_SIDE), _cluster(local_cluster), out,
                          echo=[].append, progress=False)
    assert summary.counts == {PREPARED: 1, "empty_file": 1}
    before = load_manifest("csv", corpus, tmp_path / "list.csv")
    after = load_manifest("csv", None, out / "manifest.csv")
    assert [(r.video_id, r.label_name, r.split, r.text) for r in after.rows] == \
        [(r.video_id, r.label_name, r.split, r.text) for r in before.rows]
    paths = [r.path for r in after.rows]
    assert paths[0] == str(out / "train" / f"{k400_id('h264hd')}.mp4")  # prepared (relative in the CSV)
    assert paths[1:] == [r.path for r in before.rows[1:]]  # not selected (val), and kept (0 bytes): the originals


def test_the_dry_run_prints_the_plan_and_the_disk_it_needs(corpus, tmp_path):
    said: list[str] = []
    out = tmp_path / "dst"
    assert run_prepare(load_manifest("k400", corpus, splits=("train",)), PrepareSource("k400", corpus),
                       PrepareConfig(short_side=SHORT_SIDE), RunOptions(), out, echo=said.append, dry_run=True) is None
    assert not out.exists()
    text = "\n".join(said)
    assert "7 files (train 7)" in text and "to do 7" in text and "short side 128" in text
    assert "estimated from" in text and "free on" in text and ": enough" in text


@pytest.mark.parametrize("args,needle", [
    (["--out", "{root}/inside"], "inside the source folder"),
    (["--out", "{root}"], "inside the source folder"),
    (["--short-side", "8", "--out", "{tmp}/o"], "--short-side must be an integer >= 16"),
    (["--crf", "60", "--out", "{tmp}/o"], "--crf must be an integer in 0..51"),
    (["--out", "{tmp}/file"], "is a file; prepare to a folder"),
])
def test_bad_arguments_are_one_line(corpus, tmp_path, args, needle):
    from click.testing import CliRunner

    from cavnet.cli import main

    args = [a.format(root=corpus, tmp=tmp_path) for a in args]
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["prepare", "--root", str(corpus), *args])
    assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_output_size_keeps_the_aspect_and_never_upscales():
    assert output_size(640, 360, 128) == (228, 128)
    assert output_size(180, 320, 128) == (128, 228)
    assert output_size(96, 64, 128) == (96, 64)
    assert output_size(33, 25, 128) == (32, 24)
    assert output_size(1920, 1080, 256) == (456, 256)


def test_fraction_rates_are_kept_and_a_committed_output_is_reused(tmp_path):
    """29.97 fps (30000/1001) stays 29.97 fps: every timestamp is copied. A second call reuses the output."""
    from cavnet.extract.media.transcode import prepare_file

    src = tmp_path / "ntsc.mp4"
    media.write_video(src, _pictures(30, (160, 120), 0), Fraction(30000, 1001))
    result = prepare_file(str(src), tmp_path / "out.mp4", PrepareConfig(short_side=64))
    assert result.status == PREPARED
    with av.open(str(src)) as a, av.open(str(tmp_path / "out.mp4")) as b:
        pa = [f.pts * f.time_base for f in a.decode(video=0)]
        pb = [f.pts * f.time_base for f in b.decode(video=0)]
        assert pa == pb and b.streams.video[0].average_rate == a.streams.video[0].average_rate
    again = prepare_file(str(src), tmp_path / "out.mp4", PrepareConfig(short_side=64))
    assert again.reused and again.status == PREPARED
    assert (again.out_width, again.out_height) == output_size(160, 120, 64) == (86, 64)
    (tmp_path / "out.mp4").write_bytes(b"not a video")  # not what a commit leaves: redone
    redone = prepare_file(str(src), tmp_path / "out.mp4", PrepareConfig(short_side=64))
    assert not redone.reused and redone.status == PREPARED and redone.bytes > 100
