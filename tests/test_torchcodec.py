"""The torchcodec decoder (``--decoder torchcodec``) against the PyAV decoder on the test media, its NVDEC path
run on the CPU (no GPU here: the GPU check runs it on a device), and the extra's missing pieces, one line each.

Tolerance (extract/media/tcdecode.py): the same status, clip count and clip times (within a frame) on every
file; clips within ``CLIP_TOLERANCE`` grey levels on average (torchcodec resizes bilinearly, cavnet's PyAV path
by area averaging), except the variable-frame-rate file (indexed at its average rate by torchcodec); audio of
the same length within 2 % except where the sample rate changes mid-stream (torchcodec keeps less of it).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import media
from cavnet.bench.corpus import CorpusSpec, _encode
from cavnet.errors import CavnetError
from cavnet.extract.config import ClipSampling, LogMel
from cavnet.extract.media import tcsetup
from cavnet.extract.media.decode import decode_video

MISSING = tcsetup.missing_pieces()
if MISSING and os.environ.get("CI"):  # CI installs every piece (.ci/run): a missing one is a failure there
    raise RuntimeError("the torchcodec decoder's pieces are missing: " + "; ".join(MISSING))
pytestmark = pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING) + " (run tools/ffmpeg_libs.sh)")

SAMPLING = ClipSampling(clips=2, frames=16, short_side=32, size=32)
TEXTURED = ClipSampling(clips=3, frames=8, short_side=112, size=112)


def _both(path, sampling: ClipSampling = SAMPLING, **kw):
    from cavnet.extract.media.tcdecode import decode_video_torchcodec

    return decode_video(str(path), sampling, LogMel(), 2), decode_video_torchcodec(str(path), sampling, LogMel(), 2,
                                                                                   **kw)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The reliability suite's mixed corpus (every damage and oddity it knows), written once here."""
    from test_reliability_media import EXPECTED, build_corpus

    root = tmp_path_factory.mktemp("mixed")
    build_corpus(root)
    return root, [name for name in EXPECTED if name != "missing.mp4"] + ["missing.mp4"]


def test_statuses_clips_and_audio_match_the_pyav_decoder(mixed):
    from cavnet.extract.media.tcdecode import CLIP_TOLERANCE

    root, names = mixed
    for name in names:
        a, b = _both(root / name)
        assert (b.status, b.clips.shape) == (a.status, a.clips.shape), (name, a.status, a.error, b.status, b.error)
        assert bool(a.error) == bool(b.error), name
        if not len(a.clips):
            continue
        assert abs(a.duration - b.duration) <= 1.5 / a.fps and a.fps == b.fps, name
        if name != "vfr.mp4":
            np.testing.assert_allclose(b.clip_times, a.clip_times, atol=1.0 / a.fps, err_msg=name)
            assert np.abs(a.clips.astype(np.int16) - b.clips).mean() <= CLIP_TOLERANCE, name
        assert (a.audio is None) == (b.audio is None), name
        if a.audio is not None and name != "rate_change.ts":
            assert abs(len(a.audio) - len(b.audio)) <= 0.02 * len(a.audio), (name, len(a.audio), len(b.audio))
            n = min(len(a.audio), len(b.audio))
            assert np.abs(a.audio[:n] - b.audio[:n]).mean() < 0.01, name


def test_textured_and_rotated_videos_are_within_the_tolerance(tmp_path):
    from cavnet.extract.media.tcdecode import CLIP_TOLERANCE

    path = tmp_path / "b.mp4"
    _encode((CorpusSpec(videos=1, seconds=2.0, size=(320, 240)), 0, str(path)))  # AV-Synth, B-frames, AAC
    a, b = _both(path, TEXTURED)
    assert (a.status, b.status, a.clips.shape) == ("ok", "ok", b.clips.shape) and len(a.clips) == 3
    assert np.abs(a.clips.astype(np.int16) - b.clips).mean() <= CLIP_TOLERANCE
    image = media.solid_frames(10, (64, 48), (255, 0, 0))
    image[:, :, 32:] = (0, 0, 255)
    media.write_av(tmp_path / "rot.mp4", image, np.arange(10) / 25, rotation=-90)
    a, b = _both(tmp_path / "rot.mp4", ClipSampling(clips=1, frames=8, short_side=32, size=32))
    assert b.status == "no_audio" and np.abs(a.clips.astype(np.int16) - b.clips).mean() <= CLIP_TOLERANCE


def test_nvdec_takes_large_h264_and_hevc_on_cuda_workers_only():
    from cavnet.extract.media.tcdecode import nvdec_wanted

    assert nvdec_wanted("h264", 1280, 720, "cuda") and nvdec_wanted("hevc", 1080, 1920, "cuda:1")
    assert not nvdec_wanted("h264", 960, 540, "cuda")  # below 720p the CPU is as fast
    assert not nvdec_wanted("vp9", 1920, 1080, "cuda") and not nvdec_wanted("av1", 3840, 2160, "cuda")
    assert not nvdec_wanted("h264", 1920, 1080, "cpu")


def test_the_nvdec_path_runs_on_the_cpu_within_the_tolerance(mixed, tmp_path):
    """The GPU route (full frames from torchcodec's beta backend, resized and cropped where they are) with
    the CPU as its device: the same clips as PyAV within the tolerance."""
    from cavnet.extract.media import tcdecode

    root, _ = mixed
    path = tmp_path / "b.mp4"
    _encode((CorpusSpec(videos=1, seconds=2.0, size=(320, 240)), 0, str(path)))
    for file, sampling in ((path, TEXTURED), (root / "large.mp4", SAMPLING)):
        head = tcdecode._header(str(file), 2)
        audio = tcdecode._audio(str(file), head, 16000)
        on_device = tcdecode._video(str(file), head, sampling, 1, "cpu", audio, 2, on_device=True)
        plain = decode_video(str(file), sampling, LogMel(), 2)
        assert (on_device.status, on_device.clips.shape) == (plain.status, plain.clips.shape)
        assert np.abs(plain.clips.astype(np.int16) - on_device.clips).mean() <= tcdecode.CLIP_TOLERANCE


def test_a_file_nvdec_fails_on_is_decoded_on_the_cpu(mixed, monkeypatch):
    from cavnet.extract.media import tcdecode

    root, _ = mixed
    real, devices = tcdecode._video, []

    def video(path, head, sampling, threads, device, audio, segments, on_device=False):
        devices.append((device, on_device))
        if on_device:
            raise RuntimeError("NVDEC: no decoder session left")
        return real(path, head, sampling, threads, device, audio, segments, on_device)

    monkeypatch.setattr(tcdecode, "_video", video)
    got = tcdecode.decode_video_torchcodec(str(root / "large.mp4"), SAMPLING, LogMel(), 2, device="cuda")
    assert devices == [("cuda", True), ("cpu", False)] and got.status == "ok" and len(got.clips) == 1
    devices.clear()
    tcdecode.decode_video_torchcodec(str(root / "ok.mp4"), SAMPLING, LogMel(), 2, device="cuda")
    assert devices == [("cpu", False)]  # 32x24: below the threshold, never sent to NVDEC


def test_each_missing_piece_is_one_line():
    lines = tcsetup.missing_pieces(loadable=lambda soname: False, roots=[], package=None)
    assert [line.split(":")[0] for line in lines] == ["torchcodec", "FFmpeg", "nvidia-npp"]
    assert all("\n" not in line and len(line) < 300 for line in lines)
    assert "pip install 'cavnet[torchcodec]'" in lines[0] and "tools/ffmpeg_libs.sh" in lines[1]
    assert tcsetup.NPP_PIN in lines[2]
    assert tcsetup.missing_pieces() == []  # here every piece is installed
    assert tcsetup.npp_needed(tcsetup._package_dir()) == ["libnppicc.so.13"]  # the PyPI wheel is a CUDA build


def test_the_cli_refuses_the_decoder_in_one_line_when_a_piece_is_missing(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from cavnet.cli import main

    monkeypatch.setattr(tcsetup, "_LOADED", {})
    monkeypatch.setattr(tcsetup, "missing_pieces", lambda: ["FFmpeg: not found", "nvidia-npp: not found"])
    media.make_video(tmp_path / "a.mp4", seconds=0.5)
    (tmp_path / "m.csv").write_text(f"path,label\n{tmp_path / 'a.mp4'},x\n")
    result = CliRunner().invoke(main, ["extract", "--dataset", "csv", "--manifest", str(tmp_path / "m.csv"),
                                       "--out", str(tmp_path / "s.h5"), "--visual", "resnext3d-tiny", "--audio",
                                       "audio-cnn-tiny",
                                       "--decoder", "torchcodec"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "cavnet: error: the torchcodec decoder is unavailable: FFmpeg: not found; nvidia-npp: not found"]
    with pytest.raises(CavnetError):
        tcsetup.load()


def test_the_decoder_is_recorded_and_dispatched(mixed):
    from cavnet.extract.config import ExtractConfig
    from cavnet.extract.embed import decode_item
    from cavnet.extract.manifest import ManifestRow

    root, _ = mixed
    config = ExtractConfig(visual="resnext3d-tiny", audio="audio-cnn-tiny", decoder="torchcodec",
                           sampling=SAMPLING)
    assert ExtractConfig.from_json(config.to_json()).decoder == "torchcodec"
    assert ExtractConfig().content_key()["decoder"] == "pyav"
    row = ManifestRow("cut70", str(root / "cut70.mkv"), 0, "a", "train")
    assert decode_item(row, config).status == "short_decode"
    with pytest.raises(CavnetError, match="--decoder must be one of pyav, torchcodec"):
        ExtractConfig(decoder="ffmpeg")


def test_the_install_check_reports_each_missing_piece_on_its_own_line(tmp_path, monkeypatch, capsys):
    """`make smoke` (tools/check_install.py): with the lock pinning torchcodec, every missing piece is a
    line and a failure; with a lock that does not, the extra is reported as not installed, and passes."""
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).parents[1] / "tools" / "check_install.py"
    spec = importlib.util.spec_from_file_location("check_install", tool)
    check_install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_install)
    monkeypatch.setattr(check_install, "CHECKS", {})
    monkeypatch.setattr(check_install, "lock_mismatches", lambda lock: [])
    absent = tcsetup.missing_pieces(loadable=lambda soname: False, roots=[], package=None)
    monkeypatch.setattr(tcsetup, "missing_pieces", lambda: absent)
    (tmp_path / "with.lock").write_text("torchcodec==0.11.0\n    # via cavnet (pyproject.toml)\n")
    (tmp_path / "without.lock").write_text("numpy==2.0.0\n")
    assert check_install.main(["--lock", str(tmp_path / "with.lock")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"check_install: torchcodec extra: {line}" for line in absent] and len(err) == 3
    assert check_install.main(["--lock", str(tmp_path / "without.lock")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "torchcodec             not installed (optional" in out.out
