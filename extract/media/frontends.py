"""Audio segments as the audio backbone takes them: cavnet's log-mel examples, or what a Hugging Face feature
extractor (AST's, CLAP's) makes of windows placed the same way.

A window is ``encoder.audio_window`` seconds (the model's own input length unless shortened). Windows go
where cavnet puts its log-mel examples: as many as the audio holds without overlap (at most ``segments``),
centred on the clips when there are as many windows as clips, else spread uniformly; a window is moved inside
the audio when the audio is long enough, and audio shorter than one window is handed over whole, for the
extractor to pad as it pads (AST: zero fbank frames; CLAP: its ``padding``, repeat-then-pad by default);
audio shorter than one 25 ms analysis frame, which the fbank cannot frame at all, is zero-padded to one.

The extractor is the transformers class the folder named, rebuilt in every decode process from the settings
the store config records (``encoder.extractor``), and called on one window at a time, so its output is the
processor's own.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from ..config import EncoderConfig, ExtractConfig, LogMel
from .audio import segment_examples
from .sampling import uniform_starts, valid_count

SHORTEST_SECONDS = 0.025  # one 25 ms analysis frame (Kaldi fbank's window, AST's extractor)


def audio_examples(waveform: np.ndarray | None, config: ExtractConfig, clip_times: np.ndarray | None,
                   duration: float, return_times: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``(m, 1, frames, bins)`` float32 examples of ``config``'s audio front end (with ``return_times``,
    also their centres in seconds); see :func:`~cavnet.extract.media.audio.segment_examples`."""
    segments = config.audio_sampling.segments
    if not config.encoder.extractor:
        return segment_examples(waveform, config.logmel, segments, clip_times, duration, return_times)
    return extractor_examples(waveform, config.encoder, config.logmel, segments, clip_times, duration, return_times)


@functools.lru_cache(maxsize=4)
def feature_extractor(settings: str) -> Any:
    """The transformers feature extractor of recorded ``settings`` (JSON with ``feature_extractor_type``)."""
    from cavnet.extract.backbones.hf.family import transformers_class

    d = json.loads(settings)
    return transformers_class(d["feature_extractor_type"]).from_dict(d)


def window_starts(samples: int, rate: int, window: float, segments: int, clip_times: np.ndarray | None,
                  duration: float) -> tuple[np.ndarray, int]:
    """``(m,)`` first samples of the windows and their length in samples (see the module docstring)."""
    seconds = samples / rate
    span = min(seconds, duration) if duration and duration > 0 else seconds
    m = valid_count(span, window, segments)
    if clip_times is not None and len(clip_times) == m:
        centres = np.asarray(clip_times, dtype=np.float64)
    else:
        centres = uniform_starts(span, window, m) + window / 2.0
    length = int(round(window * rate))
    starts = np.rint(centres * rate - length / 2.0).astype(np.int64)
    return np.clip(starts, 0, max(samples - length, 0)), length


def extractor_examples(waveform: np.ndarray | None, encoder: EncoderConfig, logmel: LogMel, segments: int,
                       clip_times: np.ndarray | None, duration: float,
                       return_times: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One extractor input per window, its first channel (CLAP's fusion input is four copies of it):
    ``(m, 1, frames, bins)`` float32. None or empty audio gives none."""
    shape = (1, logmel.example_frames, logmel.n_mels)
    if waveform is None or waveform.size == 0 or segments < 1:
        empty = np.zeros((0, *shape), np.float32)
        return (empty, np.zeros(0, np.float64)) if return_times else empty
    wave = np.ascontiguousarray(waveform.reshape(-1), dtype=np.float32)
    rate = logmel.sample_rate
    starts, length = window_starts(len(wave), rate, encoder.audio_window, segments, clip_times, duration)
    fe = feature_extractor(encoder.extractor)
    key = fe.model_input_names[0]  # input_values (AST), input_features (CLAP)
    out = np.empty((len(starts), *shape), np.float32)
    centres = np.empty(len(starts), np.float64)
    shortest = int(round(SHORTEST_SECONDS * rate))
    for j, first in enumerate(starts):
        piece = wave[first:first + length]
        if len(piece) < shortest:  # shorter than one analysis frame, which Kaldi's fbank refuses: zero-pad to one
            piece = np.pad(piece, (0, shortest - len(piece)))
        x = np.asarray(fe(piece, sampling_rate=rate, return_tensors="np")[key][0], dtype=np.float32)
        out[j] = x[None] if x.ndim == 2 else x[:1]
        centres[j] = (first + len(piece) / 2.0) / rate
    return (out, centres) if return_times else out
