"""Mel filterbank matrices ``(n_fft // 2 + 1, n_mels)`` built the way the two reference front ends build them.

- :func:`htk_mel_matrix`: the AudioSet release's ``mel_features.spectrogram_to_mel_matrix`` (VGGish). Band
  edges are spaced evenly on the HTK mel scale ``1127 ln(1 + f / 700)``; each FFT bin is placed by *its own
  mel value* and weighted by a triangle that is linear in mel between the band's edges; the DC bin gets no
  weight. (torchaudio's ``mel_scale="htk"`` filterbank draws the same triangles linear in Hz, which moves
  every weight by up to 0.7%.)
- :func:`slaney_mel_matrix`: ``librosa.filters.mel`` with its defaults (``htk=False``, ``norm="slaney"``),
  which PANNs' CNN14 front end uses: Slaney's mel scale (linear below 1 kHz, logarithmic above), triangles
  linear in Hz, each scaled by ``2 / (upper edge - lower edge)`` so every band has the same area.

Computed in float64 with numpy; no torch, no files.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import LogMel

_SLANEY_HZ_PER_MEL = 200.0 / 3.0  # below 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # above 1 kHz: 27 mels per factor 6.4


def _check(sample_rate: int, f_min: float, f_max: float) -> None:
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"mel bands need 0 <= f_min < f_max <= {sample_rate / 2:g} Hz, got {f_min:g}-{f_max:g}")


def hz_to_htk_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def htk_mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` float64: the VGGish / AudioSet mel matrix (see the module docstring)."""
    _check(sample_rate, f_min, f_max)
    bins_mel = hz_to_htk_mel(np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1))
    edges = np.linspace(hz_to_htk_mel(f_min), hz_to_htk_mel(f_max), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin
    return weights


def hz_to_slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    above = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL + np.log(np.maximum(hz, 1e-12) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, above, hz / _SLANEY_HZ_PER_MEL)


def slaney_mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
    above = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - break_mel))
    return np.where(mel >= break_mel, above, mel * _SLANEY_HZ_PER_MEL)


def slaney_mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` float64: librosa's default mel filterbank, transposed."""
    _check(sample_rate, f_min, f_max)
    bins_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(f_min), hz_to_slaney_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bins_hz[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))


def mel_matrix(logmel: LogMel) -> np.ndarray:
    """The ``(n_fft // 2 + 1, n_mels)`` matrix of ``logmel``'s ``mel_scale``."""
    build = htk_mel_matrix if logmel.mel_scale == "htk" else slaney_mel_matrix
    return build(logmel.sample_rate, logmel.n_fft, logmel.n_mels, logmel.f_min, logmel.f_max)
