"""Helpers of the media-sandbox suites: a TCP listener that counts connections, and files that would make
FFmpeg open more than themselves."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import av
import numpy as np

import media


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


REFUSED = ["concat-loop", "concat-url", "concat-local", "hls-url", "image-pattern"]


def hostile_files(root: Path, port: int, local: Path) -> dict[str, Path]:
    """In ``root``: a concat list that lists itself, concat lists naming a URL on ``port`` and the local
    video ``local``, an HLS playlist of that URL, and a file named like an image-sequence pattern (with a
    file its pattern would expand to beside it). Keys: :data:`REFUSED`."""
    url = f"http://127.0.0.1:{port}/v.mp4"
    files = {"concat-loop": root / "loop.ffconcat", "concat-url": root / "url.ffconcat",
             "concat-local": root / "local.ffconcat", "hls-url": root / "list.m3u8",
             "image-pattern": root / "frame-%03d.mp4"}
    files["concat-loop"].write_text("ffconcat version 1.0\nfile loop.ffconcat\nfile loop.ffconcat\n")
    files["concat-url"].write_text(f"ffconcat version 1.0\nfile '{url}'\n")
    files["concat-local"].write_text(f"ffconcat version 1.0\nfile '{local}'\n")
    files["hls-url"].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{url}\n#EXT-X-ENDLIST\n")
    media.make_video(root / "frame-001.mp4", seconds=0.5, size=(32, 24))
    files["image-pattern"].write_text("not a video: the name is a pattern FFmpeg's image2 would expand\n")
    return files


def pcm_file(path: Path, samples: np.ndarray, rate: int, layout: str) -> Path:
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
