"""Media reach nothing outside the file (extract/media/sandbox.py): a path that looks like a URL is the local
file, containers that name other files or addresses (concat lists, HLS playlists, image sequences) are refused
by every reader, nothing connects to the network, a per-file budget ends a decode, and any channel layout is
downmixed to mono. Each reader is run on every instance; each ends with a status and a message."""

from __future__ import annotations

import socket
import threading
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

SAMPLING, LOGMEL = ClipSampling(clips=2, frames=4, size=16, short_side=16), LogMel()


class Listener:
    """A local TCP port that records every connection made to it and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port, self.connections, self.stop = self.sock.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, listener) -> dict[str, Path]:
    """Files that would make FFmpeg open more than themselves, and their names."""
    root = tmp_path_factory.mktemp("sandbox")
    url = f"http://127.0.0.1:{listener.port}/v.mp4"
    (root / "http:").mkdir()
    real = media.make_video(root / "http:" / "real.mp4", seconds=0.5, size=(32, 24))
    files = {
        "concat-loop": root / "loop.ffconcat",
        "concat-url": root / "url.ffconcat",
        "concat-local": root / "local.ffconcat",
        "hls-url": root / "list.m3u8",
        "image-pattern": root / "frame-%03d.mp4",
    }
    files["concat-loop"].write_text("ffconcat version 1.0\nfile loop.ffconcat\nfile loop.ffconcat\n")
    files["concat-url"].write_text(f"ffconcat version 1.0\nfile '{url}'\n")
    files["concat-local"].write_text(f"ffconcat version 1.0\nfile '{real}'\n")
    files["hls-url"].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{url}\n#EXT-X-ENDLIST\n")
    media.make_video(root / "frame-001.mp4", seconds=0.5, size=(32, 24))
    files["image-pattern"].write_text("not a video: the name is a pattern FFmpeg's image2 would expand\n")
    return {"real": real, **files}


REFUSED = ["concat-loop", "concat-url", "concat-local", "hls-url", "image-pattern"]


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


def _pcm(path: Path, samples: np.ndarray, rate: int, layout: str) -> Path:
    """``samples`` (channels, n) int16 as PCM in Matroska with the channel ``layout``."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate)
        s.layout = layout
        for i in range(0, samples.shape[1], 1600):
            chunk = np.ascontiguousarray(samples[:, i:i + 1600].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.mark.parametrize("layout", ["9 channels", "0x1ff", "16 channels"])
def test_any_channel_layout_is_downmixed_to_mono(tmp_path, layout):
    channels = av.AudioLayout(layout).nb_channels
    rng = np.random.default_rng(0)
    pcm = rng.integers(-8000, 8000, size=(channels, 16000), dtype=np.int16)
    d = decode_video(str(_pcm(tmp_path / "many.mkv", pcm, 16000, layout)), SAMPLING, LOGMEL, 2)
    assert d.status == NO_VIDEO  # the file holds audio only; the audio is what this checks
    expected = (pcm.astype(np.float64) / 32768.0).mean(axis=0)  # the mean of the channels, at the same rate
    assert d.audio is not None and len(d.audio) == len(expected)
    np.testing.assert_allclose(d.audio, expected, atol=1e-4)
