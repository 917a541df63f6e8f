"""Decoded audio frames to one mono float32 waveform at the front end's rate, whatever their layout, format
or rate (they may change mid-stream), with the encoder's padding cut."""

from __future__ import annotations

import math

import av
import numpy as np

from ...errors import error_message


class AudioCollector:
    """Resamples decoded audio frames to mono float32 at ``rate``; a new resampler whenever the input's
    sample rate, layout or format changes (PyAV's resampler is fixed to its first frame). Channels of
    unspecified order, and a layout the resampler refuses, are averaged to mono here first."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.resampler: av.AudioResampler | None = None
        self.key: tuple | None = None
        self.downmix = False
        self.chunks: list[np.ndarray] = []
        self.errors, self.error = 0, ""

    def _start(self) -> None:
        self._pull(None)
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate,
                                           frame_size=self.rate)  # 1 s frames: fewer to convert

    def push(self, frame: av.AudioFrame) -> None:
        try:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != self.key:
                self._start()
                # channels of unspecified order have no downmix matrix in FFmpeg: average them here
                self.key, self.downmix = key, any(c.name == "NONE" for c in frame.layout.channels)
            if not self.downmix:
                try:
                    self._pull(frame)
                    return
                except Exception:  # a layout the resampler refuses: average the channels ourselves
                    self.downmix = True
                    self.resampler = None
                    self._start()
            self._pull(_mono(frame))
        except Exception as exc:  # a frame that cannot be taken at all: drop it, keep the video going
            self.errors, self.error = self.errors + 1, self.error or f"audio: {error_message(exc)}"
            try:  # keep what the resampler already holds (up to one output frame)
                self._pull(None)
            except Exception:
                pass
            self.resampler, self.key = None, None

    def _pull(self, frame: av.AudioFrame | None) -> None:
        if self.resampler is None:
            return
        for out in self.resampler.resample(frame):
            self.chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> np.ndarray | None:
        """``(samples,)`` float32, or None when nothing was decoded."""
        try:
            self._pull(None)
        except Exception as exc:
            self.errors, self.error = self.errors + 1, self.error or f"audio: {error_message(exc)}"
        self.resampler, self.key = None, None
        if not self.chunks:
            return None
        wave = np.concatenate(self.chunks).astype(np.float32, copy=False)
        self.chunks = []
        return wave if wave.size else None


def _mono(frame: av.AudioFrame) -> av.AudioFrame:
    """``frame`` averaged over its channels, as a mono float frame at its own sample rate."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    samples = data.reshape(channels, -1) if frame.format.is_planar else data.reshape(-1, channels).T
    if samples.dtype.kind == "i":  # s16, s32: full scale is 2^(bits-1)
        samples = samples.astype(np.float32) / (np.iinfo(samples.dtype).max + 1)
    elif samples.dtype.kind == "u":  # u8: centred on 128
        samples = (samples.astype(np.float32) - 128.0) / 128.0
    mono = samples.astype(np.float32).mean(axis=0, keepdims=True)
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono), format="flt", layout="mono")
    out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
    return out


def trim_padding(wave: np.ndarray | None, stream: av.AudioStream, rate: int) -> np.ndarray | None:
    """Cut encoder padding (AAC pads its last 1024-sample frame) beyond the stream's declared duration.
    Only a small excess is cut, so a wrong header never costs real audio."""
    if wave is None or stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return wave
    declared = int(math.ceil(float(stream.duration * stream.time_base) * rate))
    excess = len(wave) - declared
    return wave[:declared] if 0 < excess <= 0.25 * rate else wave
