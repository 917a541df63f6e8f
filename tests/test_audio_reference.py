"""The audio front ends against the published reference math, re-derived here in plain numpy.

VGGish: the AudioSet release's ``mel_features.py`` / ``vggish_input.waveform_to_examples`` (frame without
padding, periodic Hann, |rfft|, mel matrix linear in HTK mel with the DC row zeroed, log(mel + 0.01), 96-frame
examples every 96 frames). CNN14: librosa conventions (reflect-padded centred frames, |rfft|^2, Slaney mel
filterbank with area normalisation, 10 log10(max(., 1e-10))). Nothing here calls cavnet's own mel code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torchaudio

from cavnet.extract.media.audio import log_mel, segment_examples
from cavnet.extract.backbones import get_spec
from cavnet.extract.config import LogMel
from cavnet.extract.media.melbank import htk_mel_matrix, slaney_mel_matrix


# --- the reference, from the published formulas --------------------------------------------------------

def ref_htk_mel_matrix(bins: int, rate: float, bands: int, lo: float, hi: float) -> np.ndarray:
    """mel_features.spectrogram_to_mel_matrix, band by band."""
    to_mel = lambda hz: 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)  # noqa: E731
    bins_mel = to_mel(np.linspace(0.0, rate / 2.0, bins))
    edges = np.linspace(to_mel(lo), to_mel(hi), bands + 2)
    out = np.empty((bins, bands))
    for i in range(bands):
        left, centre, right = edges[i:i + 3]
        up = (bins_mel - left) / (centre - left)
        down = (right - bins_mel) / (right - centre)
        out[:, i] = np.maximum(0.0, np.minimum(up, down))
    out[0, :] = 0.0
    return out


def ref_frames(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    count = 1 + (len(signal) - length) // hop
    return np.stack([signal[i * hop:i * hop + length] for i in range(count)])


def ref_vggish_log_mel(wave: np.ndarray, rate: int, bands: int, fft: int | None = None) -> np.ndarray:
    window_len, hop = int(round(rate * 0.025)), int(round(rate * 0.010))
    fft = fft or 2 ** int(np.ceil(np.log(window_len) / np.log(2.0)))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / window_len * np.arange(window_len))  # periodic
    magnitude = np.abs(np.fft.rfft(ref_frames(wave.astype(np.float64), window_len, hop) * hann, fft))
    return np.log(magnitude @ ref_htk_mel_matrix(magnitude.shape[1], rate, bands, 125.0, 7500.0) + 0.01)


def ref_waveform_to_examples(wave: np.ndarray, bands: int = 64, fft: int | None = None) -> np.ndarray:
    spec = ref_vggish_log_mel(wave, 16000, bands, fft)
    return ref_frames(spec, 96, 96)  # (examples, 96, bands)


def ref_slaney_mel_matrix(rate: int, fft: int, bands: int, lo: float, hi: float) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm='slaney'), transposed to (bins, bands)."""
    def to_mel(hz: float) -> float:
        return hz / (200.0 / 3) if hz < 1000.0 else 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27)

    def to_hz(mel: float) -> float:
        return mel * (200.0 / 3) if mel < 15.0 else 1000.0 * math.exp((mel - 15.0) * math.log(6.4) / 27)

    points = [to_hz(m) for m in np.linspace(to_mel(lo), to_mel(hi), bands + 2)]
    freqs = np.linspace(0.0, rate / 2, fft // 2 + 1)
    out = np.zeros((fft // 2 + 1, bands))
    for i in range(bands):
        a, b, c = points[i:i + 3]
        tri = np.maximum(0.0, np.minimum((freqs - a) / (b - a), (c - freqs) / (c - b)))
        out[:, i] = tri * 2.0 / (c - a)
    return out


def ref_cnn14_log_mel(wave: np.ndarray) -> np.ndarray:
    fft, hop = 1024, 320
    padded = np.pad(wave.astype(np.float64), fft // 2, mode="reflect")
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fft) / fft)
    power = np.abs(np.fft.rfft(ref_frames(padded, fft, hop) * hann, fft)) ** 2
    mel = power @ ref_slaney_mel_matrix(32000, fft, 64, 50.0, 14000.0)
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


# --- the tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bins, bands, fft", [(257, 64, 512), (513, 128, 1024)])
def test_htk_mel_matrix_is_the_release_matrix(bins, bands, fft):
    ours = htk_mel_matrix(16000, fft, bands, 125.0, 7500.0)
    np.testing.assert_allclose(ours, ref_htk_mel_matrix(bins, 16000, bands, 125.0, 7500.0), rtol=0, atol=1e-12)
    if bands == 64:  # torchaudio's HTK bank (linear in Hz) is not it: the difference the docs quote
        hz_linear = torchaudio.functional.melscale_fbanks(bins, 125.0, 7500.0, bands, 16000, norm=None,
                                                          mel_scale="htk").numpy()
        assert 1e-3 < np.abs(ours - hz_linear).max() < 1e-2


def test_slaney_mel_matrix_is_librosas():
    np.testing.assert_allclose(slaney_mel_matrix(32000, 1024, 64, 50.0, 14000.0),
                               ref_slaney_mel_matrix(32000, 1024, 64, 50.0, 14000.0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backbone", ["vggish", "resnet50-audio"])
def test_vggish_style_front_end_matches_waveform_to_examples(backbone):
    lm = get_spec(backbone).logmel
    wave = noise(5.0, 16000, seed=3)
    ref = ref_waveform_to_examples(wave, lm.n_mels, lm.n_fft)
    assert ref.shape == (5, 96, lm.n_mels)
    spec = log_mel(wave, lm)
    reference_spec = ref_vggish_log_mel(wave, 16000, lm.n_mels, lm.n_fft)
    assert spec.shape == reference_spec.shape
    np.testing.assert_allclose(spec, reference_spec, rtol=0, atol=1e-4)
    # the reference's examples are frames [96k, 96k + 96): ask for examples centred where they are
    centres = (np.arange(5) * 96 * 160 + (95 * 160 + 400) / 2.0) / 16000
    examples, times = segment_examples(wave, lm, 5, centres, 5.0, return_times=True)
    np.testing.assert_allclose(times, centres, atol=1e-9)
    np.testing.assert_allclose(examples[:, 0], ref, rtol=0, atol=1e-4)


def test_cnn14_front_end_matches_librosa_conventions():
    lm = get_spec("cnn14").logmel
    assert (lm.sample_rate, lm.win_length, lm.hop_length, lm.n_mels, lm.f_min, lm.f_max) == (
        32000, 1024, 320, 64, 50.0, 14000.0)
    wave = noise(2.0, 32000, seed=4)
    ours, ref = log_mel(wave, lm), ref_cnn14_log_mel(wave)
    assert ours.shape == ref.shape == (1 + len(wave) // 320, 64)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)  # dB; float32 FFT of 1024 points
    # examples are centred where asked: frame f is centred on sample f * hop
    examples, times = segment_examples(wave, lm, 2, np.array([0.5, 1.5]), 2.0, return_times=True)
    np.testing.assert_allclose(times, [0.5, 1.5], atol=lm.hop_seconds / 2)
    start = int(round(times[1] / lm.hop_seconds - (lm.example_frames - 1) / 2))
    np.testing.assert_allclose(examples[1, 0], ref[start:start + lm.example_frames], atol=1e-3)


def test_cnn14_silence_and_short_audio():
    lm = get_spec("cnn14").logmel
    assert lm.silence == pytest.approx(-100.0)
    silent = segment_examples(np.zeros(32000, np.float32), lm, 3, None, 1.0)
    np.testing.assert_allclose(silent, -100.0, atol=1e-4)
    tiny = segment_examples(noise(0.01, 32000, 5), lm, 3, None, 0.01)  # shorter than half a window
    assert tiny.shape == (1, 1, lm.example_frames, 64) and np.allclose(tiny, -100.0)


def test_front_end_parameters_are_validated():
    with pytest.raises(ValueError, match="mel_scale"):
        LogMel(mel_scale="mel")
