"""decode_video on generated media: shapes, clip placement, statuses of bad files, audio resampling."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from cavnet.extract.config import ClipSampling, LogMel
from cavnet.extract.media.decode import decode_video, normalise_clips
from cavnet.extract.media.resample import AudioCollector
from cavnet.extract.media.sampling import uniform_starts, valid_count

try:  # tests/ as a package or as a plain folder on sys.path (pytest's default rootdir insertion)
    from . import media
except ImportError:
    import media

SMALL = ClipSampling(clips=4, frames=8, short_side=32, size=32)
LOGMEL = LogMel()
RED = (200, 40, 90)


def decode(path, sampling: ClipSampling = SMALL, segments: int = 10):
    return decode_video(str(path), sampling, LOGMEL, segments)


def dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def test_sampling_helpers():
    assert valid_count(300, 16, 10) == 10
    assert valid_count(50, 16, 10) == 3
    assert valid_count(5, 16, 10) == 1
    assert valid_count(0, 16, 10) == 1
    np.testing.assert_allclose(uniform_starts(10.0, 1.0, 4), [0.0, 3.0, 6.0, 9.0])
    np.testing.assert_allclose(uniform_starts(10.0, 2.0, 1), [4.0])
    np.testing.assert_allclose(uniform_starts(0.5, 1.0, 3), [0.0, 0.0, 0.0])


def test_normal_file(tmp_path):
    out = decode(media.make_video(tmp_path / "a.mp4", seconds=2.0, fps=25, colour=RED))
    assert (out.status, out.error) == ("ok", "")
    assert out.clips.shape == (4, 8, 32, 32, 3) and out.clips.dtype == np.uint8
    assert out.fps == 25.0 and out.duration == pytest.approx(2.0, abs=0.01)
    np.testing.assert_allclose(out.clips.reshape(-1, 3).mean(0), RED, atol=4)
    # 4 clips of 8 frames (0.32 s) spread over 2 s: starts 0, 0.56, 1.12, 1.68 s -> centres + 0.16 s
    np.testing.assert_allclose(out.clip_times, [0.16, 0.72, 1.28, 1.84], atol=1e-6)
    assert out.audio.dtype == np.float32 and len(out.audio) == pytest.approx(32000, rel=0.01)


def test_default_sampling_shapes(tmp_path):
    out = decode(media.make_video(tmp_path / "d.mp4", seconds=6.4, fps=25, with_audio=False), ClipSampling())
    assert out.status == "no_audio"
    assert out.clips.shape == (10, 16, 112, 112, 3)
    x = normalise_clips(out.clips[:2], ClipSampling())
    assert x.shape == (2, 3, 16, 112, 112) and x.dtype == torch.float32
    mean = torch.tensor(ClipSampling().mean).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(x, torch.from_numpy(out.clips[:2]).permute(0, 4, 1, 2, 3).float() - mean)


def test_clips_start_at_the_planned_frames(tmp_path):
    # frame i has grey 4 i; starts 0, 0.56, 1.12, 1.68 s at 25 fps are frames 0, 14, 28, 42
    out = decode(media.make_ramp_video(tmp_path / "r.mp4", count=50, fps=25))
    assert out.status == "no_audio" and out.clips.shape[0] == 4
    first = out.clips[:, :, 16, 16, 0].astype(int)
    np.testing.assert_allclose(first[:, 0], [0, 56, 112, 168], atol=3)
    np.testing.assert_allclose(np.diff(first, axis=1), 4, atol=3)


def test_stream_without_duration_is_scanned(tmp_path):
    out = decode(media.make_raw_h264(tmp_path / "raw.h264", count=50, fps=25))
    assert out.status == "no_audio" and out.clips.shape[0] == 4
    np.testing.assert_allclose(out.clips[:, 0, 16, 16, 0], [0, 56, 112, 168], atol=3)


def test_shorter_than_one_clip_is_padded(tmp_path):
    out = decode(media.make_ramp_video(tmp_path / "s.mp4", count=5, fps=25, step=20))
    assert out.status == "no_audio" and out.clips.shape == (1, 8, 32, 32, 3)
    greys = out.clips[0, :, 16, 16, 0].astype(int)
    np.testing.assert_allclose(greys, [0, 20, 40, 60, 80, 80, 80, 80], atol=3)


def test_variable_frame_rate_follows_timestamps(tmp_path):
    out = decode(media.make_vfr_video(tmp_path / "v.mp4"))
    times = media.vfr_times()
    assert out.status == "no_audio" and out.clips.shape[0] == 4
    starts = uniform_starts(out.duration, SMALL.frames / out.fps, 4)
    expected = [int(np.argmax(times >= s - 0.25 / out.fps)) for s in starts]
    np.testing.assert_allclose(out.clips[:, 0, 16, 16, 0], [4 * i for i in expected], atol=3)
    assert expected[1] > 30  # the plan lands in the sparse second half, not at frame index 4 * 8
    # the last clip runs out of frames and repeats the final one
    assert out.clips[3, -1, 16, 16, 0] == out.clips[3, -2, 16, 16, 0]


@pytest.mark.parametrize("size", [(161, 97), (48, 96)], ids=["odd", "portrait"])
def test_odd_and_portrait_sizes(tmp_path, size):
    out = decode(media.make_video(tmp_path / "o.mp4", size=size, colour=RED))
    assert out.status == "ok" and out.clips.shape == (4, 8, 32, 32, 3)
    np.testing.assert_allclose(out.clips.reshape(-1, 3).mean(0), RED, atol=4)


def test_exact_resize_squeezes_the_whole_frame(tmp_path):
    """``resize=(H, W)`` (torchvision's two-number Resize) keeps the whole width; the short-side resize crops."""
    image = media.solid_frames(10, (128, 64), (0, 0, 255))  # 2:1, red / blue / green columns 1:2:1
    image[:, :, :32], image[:, :, 96:] = (255, 0, 0), (0, 255, 0)
    path = tmp_path / "wide.mp4"
    media.write_av(path, image, np.arange(10) / 25)
    short = decode(path).clips[0, 0]
    exact = decode(path, ClipSampling(clips=4, frames=8, short_side=32, size=32, resize=(32, 32))).clips[0, 0]
    assert short[:, :4].mean((0, 1))[2] > 200 and short[:, -4:].mean((0, 1))[2] > 200  # all blue
    assert exact[:, :4].mean((0, 1))[0] > 200 and exact[:, -4:].mean((0, 1))[1] > 200  # red ... green
    assert exact[:, 14:18].mean((0, 1))[2] > 200


def test_display_rotation_is_applied(tmp_path):
    # stored landscape, left half red, right half blue; the display matrix turns it 90 degrees clockwise
    image = media.solid_frames(10, (64, 48), (255, 0, 0))
    image[:, :, 32:] = (0, 0, 255)
    path = tmp_path / "rot.mp4"
    media.write_av(path, image, np.arange(10) / 25, rotation=-90)
    out = decode(path)
    assert out.status == "no_audio" and out.clips.shape == (1, 8, 32, 32, 3)
    top, bottom = out.clips[0, 0, :8].reshape(-1, 3).mean(0), out.clips[0, 0, -8:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_no_audio(tmp_path):
    out = decode(media.make_video(tmp_path / "n.mp4", with_audio=False))
    assert (out.status, out.audio, out.clips.shape[0]) == ("no_audio", None, 4)


def test_zero_segments_skips_audio(tmp_path):
    out = decode(media.make_video(tmp_path / "a.mp4"), segments=0)
    assert (out.status, out.audio, out.clips.shape[0]) == ("ok", None, 4)


@pytest.mark.parametrize("name,cover", [("a.m4a", False), ("art.mp4", True)], ids=["m4a", "album-art"])
def test_audio_only(tmp_path, name, cover):
    out = decode(media.make_audio_only(tmp_path / name, seconds=1.0, cover=cover))
    assert out.status == "no_video" and out.clips.shape == (0, 8, 32, 32, 3) and out.clip_times.shape == (0,)
    assert len(out.audio) == pytest.approx(16000, rel=0.01)


@pytest.mark.parametrize("kind,status", [("zero", "empty_file"), ("missing", "missing_file"),
                                         ("random", "decode_error"), ("directory", "decode_error")])
def test_bad_files_never_raise(tmp_path, kind, status):
    path = tmp_path / "bad.mp4"
    if kind == "zero":
        media.zero_byte(path)
    elif kind == "random":
        media.random_bytes(path)
    elif kind == "directory":
        path.mkdir()
    out = decode(path)
    assert out.status == status and out.clips.shape == (0, 8, 32, 32, 3) and out.audio is None
    assert out.error and "\n" not in out.error and len(out.error) <= 240


def test_truncated_mkv_is_short_decode(tmp_path):
    path = media.truncate(media.make_video(tmp_path / "t.mkv", seconds=4.0), 0.5)
    out = decode(path)
    assert out.status == "short_decode" and out.error
    assert 1 <= out.clips.shape[0] < 4 and out.duration < 0.8 * 4.0


def test_truncated_mp4_without_index_is_decode_error(tmp_path):
    # PyAV writes the moov index at the end: half the file has no index at all
    out = decode(media.truncate(media.make_video(tmp_path / "t.mp4"), 0.5))
    assert out.status == "decode_error" and out.clips.shape[0] == 0


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_other_containers(tmp_path, suffix):
    out = decode(media.make_video(tmp_path / f"c{suffix}", colour=RED))
    assert out.status == "ok" and out.clips.shape == (4, 8, 32, 32, 3)
    np.testing.assert_allclose(out.clips.reshape(-1, 3).mean(0), RED, atol=6)
    assert len(out.audio) == pytest.approx(32000, rel=0.03)  # Matroska keeps the encoder's last padded frame


@pytest.mark.parametrize("rate,channels", [(8000, 1), (48000, 1), (44100, 2), (48000, 6)])
def test_audio_resampled_to_16k_mono(tmp_path, rate, channels):
    out = decode(media.make_video(tmp_path / "a.mp4", audio_rate=rate, channels=channels, hz=440.0))
    assert out.status == "ok" and out.audio.ndim == 1 and out.audio.dtype == np.float32
    assert len(out.audio) == pytest.approx(32000, rel=0.01)
    assert dominant_hz(out.audio, 16000) == pytest.approx(440.0, abs=3)


def test_sample_rate_change_mid_stream(tmp_path):
    path = media.make_rate_change_audio(tmp_path / "rc.ts", first=(48000, 440.0), second=(22050, 880.0))
    with av.open(str(path)) as container:
        rates = [(f.sample_rate, f.samples) for f in container.decode(audio=0)]
    assert {r for r, _ in rates} == {48000, 22050}  # the file really switches rate
    native_seconds = sum(n / r for r, n in rates)
    out = decode(path)
    assert out.status == "ok"
    assert len(out.audio) == pytest.approx(native_seconds * 16000, rel=0.01)
    assert dominant_hz(out.audio[1600:14400], 16000) == pytest.approx(440.0, abs=3)
    assert dominant_hz(out.audio[-12800:-1600], 16000) == pytest.approx(880.0, abs=3)


def _frames(rate: int, seconds: float, hz: float) -> list[av.AudioFrame]:
    wave = media.tone(seconds, rate, hz)
    frames = []
    for start in range(0, wave.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        frames.append(frame)
    return frames


def test_resampler_is_rebuilt_when_the_rate_changes():
    # 16 kHz mono flt is passed through untouched by PyAV; the 48 kHz frames after it must still be resampled
    collector = AudioCollector(16000)
    for frame in _frames(16000, 0.5, 440.0) + _frames(48000, 0.5, 1000.0):
        collector.push(frame)
    collector.push(object())  # not a frame: recorded, never raised, earlier audio kept
    wave = collector.finish()
    assert collector.errors == 1 and collector.error.startswith("audio: AttributeError")
    assert len(wave) == pytest.approx(16000, abs=64)
    assert dominant_hz(wave[:7000], 16000) == pytest.approx(440.0, abs=5)
    assert dominant_hz(wave[-7000:], 16000) == pytest.approx(1000.0, abs=5)


def test_millisecond_timestamps_do_not_shift_clips(tmp_path):
    # Matroska stores ms: frame 52 of a 30 fps video sits at 1.733 s, just before the planned 52 / 30 s
    out = decode(media.make_ramp_video(tmp_path / "r.mkv", count=60, fps=30))
    assert out.status == "no_audio" and out.clips.shape[0] == 4
    first = out.clips[:, :, 16, 16, 0].astype(int)
    assert abs(first[3, 0] - 4 * 52) <= 3
    assert np.all(np.diff(first[3]) >= 2)  # the last clip is full: no repeated frame
