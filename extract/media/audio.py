"""Audio front end: the reference log-mel spectrograms, cut into examples aligned with the clips.

VGGish (the default :class:`~cavnet.extract.config.LogMel`) frames the waveform without padding (25 ms
periodic-Hann windows every 10 ms), takes the magnitude of a 512-point FFT of each 400-sample frame, applies
the AudioSet release's 64-band mel matrix over 125-7500 Hz (:mod:`cavnet.extract.media.melbank`) and returns
log(mel + 0.01). torch.stft centres a 400-sample window inside each 512-sample frame, 56 samples in; padding
the waveform by 56 zeros on both sides puts every window exactly where VGGish puts it (same frame count too;
the magnitude of an FFT does not depend on where the window sits inside the zero-padded frame).

CNN14 (``center=True``, power 2, Slaney mel, dB) follows librosa: frames centred on ``f * hop`` with
reflect padding, ``10 log10(max(mel, 1e-10))``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ..config import DB_AMIN, LogMel
from .melbank import mel_matrix
from .sampling import uniform_starts, valid_count


class LogMelFrontEnd(nn.Module):
    """``(samples,)`` or ``(B, samples)`` float waveform at ``logmel.sample_rate`` -> ``(frames, n_mels)``
    or ``(B, frames, n_mels)`` log-mel. Without ``center``: ``frames = 1 + (samples - win_length) //
    hop_length`` (0 when the waveform is shorter than one window); with it: ``1 + samples // hop_length``
    (0 when reflect padding is impossible, ``samples <= n_fft // 2``)."""

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        self.logmel = logmel
        self.pad = (logmel.n_fft - logmel.win_length) // 2
        self.register_buffer("window", torch.hann_window(logmel.win_length, periodic=True, dtype=torch.float64)
                             .float(), persistent=False)
        self.register_buffer("fbank", torch.from_numpy(mel_matrix(logmel)).float(), persistent=False)

    def frames(self, samples: int) -> int:
        lm = self.logmel
        if lm.center:
            return 1 + samples // lm.hop_length if samples > lm.n_fft // 2 else 0
        return 1 + (samples - lm.win_length) // lm.hop_length if samples >= lm.win_length else 0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        lm = self.logmel
        if self.frames(waveform.shape[-1]) == 0:
            return waveform.new_zeros(*waveform.shape[:-1], 0, lm.n_mels)
        lead = waveform.shape[:-1]
        x = waveform.reshape(-1, waveform.shape[-1])
        if not lm.center:
            x = nn.functional.pad(x, (self.pad, self.pad))
        spec = torch.stft(x, lm.n_fft, lm.hop_length, lm.win_length, self.window, center=lm.center,
                          pad_mode="reflect", return_complex=True).abs()  # (B', bins, frames)
        if lm.power != 1.0:
            spec = spec.pow(lm.power)
        mel = spec.transpose(-1, -2) @ self.fbank  # (B', frames, n_mels)
        out = torch.log(mel + lm.log_offset) if lm.log == "offset" else 10.0 * torch.log10(mel.clamp(min=DB_AMIN))
        return out.reshape(*lead, *out.shape[-2:])


@functools.lru_cache(maxsize=8)
def _front_end(logmel: LogMel) -> LogMelFrontEnd:
    return LogMelFrontEnd(logmel).eval()


def log_mel(waveform: np.ndarray, logmel: LogMel) -> np.ndarray:
    """``(samples,)`` float waveform -> ``(frames, n_mels)`` float32 log-mel (CPU)."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
        return _front_end(logmel)(x).numpy()


def segment_examples(waveform: np.ndarray | None, logmel: LogMel, segments: int,
                     clip_times: np.ndarray | None, duration: float,
                     return_times: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Cut the waveform into ``m`` log-mel examples aligned in time with the visual clips.

    Returns ``examples`` ``(m, 1, example_frames, n_mels)`` float32 (with ``return_times``, also their
    actual centre times ``(m,)`` in seconds),
    ``m = valid_count(span, example_seconds, segments)`` where ``span`` is the audio length, capped at the
    video ``duration`` when that is known (> 0), so examples stay where the clips are. When ``clip_times``
    holds exactly ``m`` times, example ``j`` is centred on clip ``j``; otherwise the examples are spread
    uniformly over the span. Examples are shifted inside the audio when it is long enough; audio shorter
    than one example is padded with silence (``logmel.silence``, what zero-padded audio gives). The spectrogram
    is computed once for the whole waveform. None or empty audio gives 0 examples.
    """
    frames, bands = logmel.example_frames, logmel.n_mels
    if waveform is None or waveform.size == 0 or segments < 1:
        empty = np.zeros((0, 1, frames, bands), np.float32)
        return (empty, np.zeros(0, np.float64)) if return_times else empty
    seconds = waveform.shape[-1] / logmel.sample_rate
    span = min(seconds, duration) if duration and duration > 0 else seconds
    m = valid_count(span, logmel.example_seconds, segments)
    if clip_times is not None and len(clip_times) == m:
        centres = np.asarray(clip_times, dtype=np.float64)
    else:
        centres = uniform_starts(span, logmel.example_seconds, m) + logmel.example_seconds / 2.0
    spec = log_mel(waveform.reshape(-1), logmel)  # (F, bands)
    # Frame f covers [f hop + start, f hop + start + win): an example starting at frame s is centred on
    # s hop + start + ((frames - 1) hop + win) / 2. Examples stay inside the spectrogram when it is long enough.
    half = logmel.frame_start + ((frames - 1) * logmel.hop_length + logmel.win_length) / 2.0
    half /= logmel.sample_rate
    first = np.rint((centres - half) / logmel.hop_seconds).astype(np.int64)
    first = np.clip(first, 0, max(len(spec) - frames, 0))
    silence = np.float32(logmel.silence)
    padded = np.full((max(len(spec), first.max() + frames), bands), silence, dtype=np.float32)
    padded[:len(spec)] = spec
    index = first[:, None] + np.arange(frames)[None, :]  # (m, frames) rows of `padded`
    examples = padded[index][:, None]
    return (examples, first * logmel.hop_seconds + half) if return_times else examples
