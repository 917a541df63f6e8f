"""Test media generated with PyAV (nothing is checked in). Helpers only; no tests here.

``make_video`` goes through :func:`cavnet.extract.synth.avwrite.write_video` when it can (even size, mono/stereo)
and through :func:`write_av` otherwise (odd sizes as yuv444p, 5.1 audio, explicit frame times).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cavnet.extract.synth.avwrite import write_video

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
_AUDIO_CODECS = {".mp4": "aac", ".m4a": "aac", ".mkv": "aac", ".webm": "libopus", ".ts": "mp2"}


def tone(seconds: float, rate: int, hz: float = 440.0, channels: int = 1, amplitude: float = 0.5,
         on_from: float = 0.0) -> np.ndarray:
    """``(channels, samples)`` float32 sine, silent before ``on_from`` seconds."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = amplitude * np.sin(2 * np.pi * hz * t) * (t >= on_from)
    return np.repeat(wave[None].astype(np.float32), channels, axis=0)


def solid_frames(count: int, size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """``(count, H, W, 3)`` uint8 frames of one colour; ``size`` is (W, H)."""
    w, h = size
    return np.broadcast_to(np.array(colour, np.uint8), (count, h, w, 3)).copy()


def make_video(path: str | Path, seconds: float = 2.0, fps: float = 25, size: tuple[int, int] = (64, 48),
               audio_rate: int = 16000, channels: int = 1, with_audio: bool = True,
               colour: tuple[int, int, int] = (200, 40, 90), hz: float = 440.0,
               audio: np.ndarray | None = None) -> Path:
    """A solid-colour video of ``seconds`` at ``fps``, ``size`` (W, H), with a tone (or ``audio``
    ``(channels, samples)``) at ``audio_rate``."""
    path = Path(path)
    frames = solid_frames(int(round(seconds * fps)), size, colour)
    if with_audio and audio is None:
        audio = tone(seconds, audio_rate, hz, channels)
    if not with_audio:
        audio = None
    n_channels = 0 if audio is None else audio.shape[0]
    if size[0] % 2 == 0 and size[1] % 2 == 0 and n_channels <= 2:
        write_video(path, frames, fps, audio, audio_rate)
    else:
        times = np.arange(len(frames)) / fps
        write_av(path, frames, times, audio, audio_rate)
    return path


def write_av(path: str | Path, frames: np.ndarray, times: np.ndarray, audio: np.ndarray | None = None,
             rate: int = 16000, rotation: int = 0) -> None:
    """H.264 frames ``(T, H, W, 3)`` shown at ``times`` seconds (any spacing: variable frame rate),
    yuv444p when a side is odd; optional ``audio`` ``(channels, samples)`` with 1, 2 or 6 channels;
    ``rotation`` degrees counter-clockwise in the display matrix (a phone's "rotate=90" is -90)."""
    path = Path(path)
    _, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=30)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        vs.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        astream = None if audio is None else _audio_stream(container, path.suffix, audio.shape[0], rate)
        for image, t in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            container.mux(vs.encode(frame))
        container.mux(vs.encode(None))
        if astream is not None:
            _encode_audio(container, astream, audio, rate)


def _audio_stream(container: av.container.OutputContainer, suffix: str, channels: int,
                  rate: int) -> av.AudioStream:
    """Added before any packet is muxed (the header is written with the first packet)."""
    stream = container.add_stream(_AUDIO_CODECS[suffix.lower()], rate=rate)
    stream.layout = _LAYOUTS[channels]
    return stream


def _encode_audio(container: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray,
                  rate: int) -> None:
    """Encode ``audio`` ``(channels, samples)`` (PyAV converts fltp to the codec's sample format)."""
    pcm = np.clip(audio, -1, 1).astype(np.float32)
    for start in range(0, pcm.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 1024]), format="fltp",
                                           layout=stream.layout.name)
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_audio_only(path: str | Path, seconds: float = 1.0, rate: int = 16000, channels: int = 1,
                    hz: float = 440.0, cover: bool = False) -> Path:
    """An audio-only file (AAC in .m4a/.mp4, Opus in .webm); ``cover`` adds an attached-picture (album art)
    MJPEG stream, which is a video stream that is not a video (.mp4 only)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = _audio_stream(container, path.suffix, channels, rate)
        if cover:
            art = container.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 64, 64, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
            picture = av.VideoFrame.from_ndarray(solid_frames(1, (64, 64), (128, 64, 32))[0], format="rgb24")
            container.mux(art.encode(picture.reformat(format="yuvj420p")) + art.encode(None))
        _encode_audio(container, stream, tone(seconds, rate, hz, channels), rate)
    return path


def make_ramp_video(path: str | Path, count: int, fps: float = 25, step: int = 4,
                    size: tuple[int, int] = (64, 48)) -> Path:
    """``count`` frames at constant ``fps`` where frame ``i`` has grey level ``step * i`` (no audio)."""
    frames = np.stack([solid_frames(1, size, (step * i,) * 3)[0] for i in range(count)])
    write_video(path, frames, fps)
    return Path(path)


def make_raw_h264(path: str | Path, count: int = 50, fps: float = 25, step: int = 4) -> Path:
    """A raw H.264 elementary stream (no container: no duration, no frame count, no pts) of a grey ramp."""
    frames = np.stack([solid_frames(1, (64, 48), (step * i,) * 3)[0] for i in range(count)])
    with av.open(str(path), "w", format="h264") as container:
        vs = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for image in frames:
            container.mux(vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(vs.encode(None))
    return Path(path)


def vfr_times() -> np.ndarray:
    """Frame times of :func:`make_vfr_video`: 30 frames every 20 ms, then 30 frames every 80 ms."""
    return np.concatenate([np.arange(30) * 0.02, 0.6 + np.arange(30) * 0.08])


def make_vfr_video(path: str | Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A variable-frame-rate mp4 whose frame ``i`` (shown at ``vfr_times()[i]``) has grey level ``4 i``."""
    times = vfr_times()
    frames = np.stack([solid_frames(1, size, (4 * i,) * 3)[0] for i in range(len(times))])
    write_av(path, frames, times)
    return Path(path)


def make_rate_change_audio(path: str | Path, first: tuple[int, float] = (48000, 440.0),
                           second: tuple[int, float] = (22050, 880.0), seconds: float = 1.0) -> Path:
    """An MPEG-TS file (H.264 + MP2) whose audio sample rate changes mid-stream: ``seconds`` of a tone
    at ``first`` = (rate, Hz), then ``seconds`` at ``second``. Two MP2 encoders feed one TS audio stream;
    MP2 carries the rate in every frame header, so FFmpeg's decoder switches rate mid-stream."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream = _audio_stream(container, ".ts", 1, first[0])
        for frame in solid_frames(int(50 * seconds), (64, 48), (90, 90, 90)):
            container.mux(vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(vs.encode(None))
        offset = 0.0
        for rate, hz in (first, second):
            packets, frame_size = _mp2_packets(tone(seconds, rate, hz), rate)
            for packet in packets:
                t = offset + packet.pts / rate
                packet.stream, packet.time_base = stream, stream.time_base
                packet.pts = packet.dts = int(round(t / stream.time_base))
                packet.duration = int(round(frame_size / rate / stream.time_base))
                container.mux(packet)
            offset += len(packets) * frame_size / rate
    return path


def _mp2_packets(audio: np.ndarray, rate: int) -> tuple[list[av.Packet], int]:
    codec = av.CodecContext.create("mp2", "w")
    codec.sample_rate, codec.layout, codec.format = rate, "mono", "s16"
    codec.time_base = Fraction(1, rate)
    codec.open()
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    packets: list[av.Packet] = []
    for start in range(0, pcm.shape[1], codec.frame_size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + codec.frame_size]),
                                           format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        packets += codec.encode(frame)
    packets += codec.encode(None)
    return packets, codec.frame_size


def truncate(path: str | Path, fraction: float) -> Path:
    """Keep the first ``fraction`` of the file's bytes."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def zero_byte(path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def random_bytes(path: str | Path, size: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path
