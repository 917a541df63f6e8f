"""Media reach nothing outside the file (extract/media/sandbox.py): a path that looks like a URL is the local
file, containers that name other files or addresses (concat lists, HLS playlists, image sequences) are refused
by every reader, nothing connects to the network, a per-file budget ends a decode, and any channel layout is
downmixed to mono. Each reader is run on every instance; each ends with a status and a message."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import media
from cavnet.extract.config import ClipSampling, LogMel, PrepareConfig
from cavnet.extract.manifest import ManifestRow
from cavnet.extract.media.decode import decode_video
from cavnet.extract.media.probe import probe_media
from cavnet.extract.media.transcode import prepare_file
from cavnet.extract.status import DECODE_ERROR, NO_VIDEO, OK, SHORT_DECODE
from sandbox_media import REFUSED, hostile_files, pcm_file

SAMPLING, LOGMEL = ClipSampling(clips=2, frames=4, size=16, short_side=16), LogMel()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, listener) -> dict[str, Path]:
    """Files that would make FFmpeg open more than themselves, and their names."""
    root = tmp_path_factory.mktemp("sandbox")
    (root / "http:").mkdir()
    real = media.make_video(root / "http:" / "real.mp4", seconds=0.5, size=(32, 24))
    files = hostile_files(root, listener.port, real)
    return {"real": real, **files}


def _prepared(path: Path, tmp: Path) -> tuple[str, str]:
    r = prepare_file(str(path), str(tmp / (path.name + ".out.mp4")), PrepareConfig(short_side=16))
    return r.status, r.error


READERS = {
    "decode": lambda p, tmp: (lambda d: (d.status, d.error))(decode_video(str(p), SAMPLING, LOGMEL, 2)),
    "probe": lambda p, tmp: (lambda r: (r.status, r.error))(probe_media(ManifestRow("x", str(p), -1, "", "train"))),
    "prepare": _prepared,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_local_file_named_like_a_url_is_read_as_the_file(hostile, listener, reader, tmp_path):
    status, error = READERS[reader](hostile["real"], tmp_path)
    assert status in (OK, "prepared"), error
    assert listener.connections == 0


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("name", REFUSED)
def test_containers_that_open_more_than_themselves_are_refused(hostile, listener, reader, name, tmp_path):
    status, error = READERS[reader](hostile[name], tmp_path)
    assert status == DECODE_ERROR and error, (status, error)
    assert "\n" not in error
    assert listener.connections == 0, "a reader connected to the network"
    assert not (tmp_path / (hostile[name].name + ".out.mp4")).exists()


def test_the_decode_budget_ends_a_file_with_the_status_its_decoded_part_earns(tmp_path, monkeypatch):
    path = media.make_video(tmp_path / "long.mp4", seconds=3.0, fps=25, size=(32, 24))
    monkeypatch.setenv("CAVNET_DECODE_PACKETS", "20")  # about 0.5 s of the file's 75 video + audio packets
    d = decode_video(str(path), SAMPLING, LOGMEL, 2)
    assert d.status == SHORT_DECODE and "decode budget" in d.error and "CAVNET_DECODE_PACKETS" in d.error
    assert 0 < d.duration < 1.5
    monkeypatch.delenv("CAVNET_DECODE_PACKETS")
    assert decode_video(str(path), SAMPLING, LOGMEL, 2).status == OK


@pytest.mark.parametrize("layout", ["9 channels", "0x1ff", "16 channels"])
def test_any_channel_layout_is_downmixed_to_mono(tmp_path, layout):
    channels = av.AudioLayout(layout).nb_channels
    rng = np.random.default_rng(0)
    pcm = rng.integers(-8000, 8000, size=(channels, 16000), dtype=np.int16)
    d = decode_video(str(pcm_file(tmp_path / "many.mkv", pcm, 16000, layout)), SAMPLING, LOGMEL, 2)
    assert d.status == NO_VIDEO  # the file holds audio only; the audio is what this checks
    expected = (pcm.astype(np.float64) / 32768.0).mean(axis=0)  # the mean of the channels, at the same rate
    assert d.audio is not None and len(d.audio) == len(expected)
    np.testing.assert_allclose(d.audio, expected, atol=1e-4)
