"""Write a small audio-visual file with PyAV (AV-Synth, the benches and the test fixtures use it).

The container follows the file extension: ``.mp4``/``.mkv`` get H.264 + AAC, ``.webm`` gets VP9 + Opus.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_CODECS = {".mp4": ("libx264", "aac"), ".mkv": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus")}


def write_video(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 at ``fps`` and optional ``audio`` ``(channels, samples)``
    float32 in [-1, 1] at ``sample_rate``. H and W are rounded down to even numbers (yuv420p)."""
    path = Path(path)
    vcodec, acodec = _CODECS[path.suffix.lower()]
    t, h, w, _ = frames.shape
    h, w = h - h % 2, w - w % 2
    with av.open(str(path), "w") as container:
        vs = container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if vcodec == "libx264":
            vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        else:
            vs.options = {"deadline": "realtime", "cpu-used": "8"}
        astream = None
        if audio is not None:
            if acodec == "libopus":
                sample_rate = 48000 if sample_rate not in (8000, 12000, 16000, 24000, 48000) else sample_rate
            astream = container.add_stream(acodec, rate=sample_rate)
            astream.layout = "mono" if audio.shape[0] == 1 else "stereo"
            if acodec == "aac":
                astream.options = {"aac_coder": "fast"}
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i, :h, :w]), format="rgb24")
            container.mux(vs.encode(frame))
        container.mux(vs.encode(None))
        if astream is not None:
            write_audio(container, astream, audio, sample_rate)


def write_audio(container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray,
                sample_rate: int) -> None:
    """Encode ``audio`` (channels, samples) in [-1, 1] (at most two channels kept) into ``stream``, then flush it."""
    pcm = np.clip(audio, -1.0, 1.0).astype(np.float32)
    if pcm.shape[0] > 2:
        pcm = pcm[:2]
    block = 1024
    for start in range(0, pcm.shape[1], block):
        chunk = np.ascontiguousarray(pcm[:, start:start + block])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sample_rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
