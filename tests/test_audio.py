"""The VGGish log-mel front end and the clip-aligned examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cavnet.extract.media.audio import LogMelFrontEnd, log_mel, segment_examples
from cavnet.extract.config import LogMel

LM = LogMel()
SILENCE = math.log(0.01)


def sine(seconds: float, hz: float = 1000.0, on_from: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * LM.sample_rate)) / LM.sample_rate
    return (0.5 * np.sin(2 * np.pi * hz * t) * (t >= on_from)).astype(np.float32)


def htk_band_of(hz: float) -> int:
    """Index of the HTK mel band (64 over 125-7500 Hz) whose centre is nearest ``hz``."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    centres_mel = np.linspace(mel(LM.f_min), mel(LM.f_max), LM.n_mels + 2)[1:-1]
    return int(np.argmin(np.abs(centres_mel - mel(hz))))


def test_examples_shape_and_finite():
    wave = np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32) * 0.1
    examples, times = segment_examples(wave, LM, 10, None, 3.0, return_times=True)
    assert examples.shape == (3, 1, 96, 64) and examples.dtype == np.float32
    assert np.isfinite(examples).all() and times.shape == (3,)


def test_one_khz_tone_peaks_in_its_band():
    spec = log_mel(sine(1.0, 1000.0), LM)
    assert np.all(spec.argmax(axis=1) == htk_band_of(1000.0))


def test_silence_is_log_offset_everywhere():
    examples = segment_examples(np.zeros(2 * 16000, np.float32), LM, 10, None, 2.0)
    assert examples.shape == (2, 1, 96, 64)
    np.testing.assert_allclose(examples, SILENCE, rtol=0, atol=1e-6)


@pytest.mark.parametrize("samples", [8000, 100])
def test_audio_shorter_than_one_example_is_padded(samples):
    wave = sine(1.0)[:samples]
    examples = segment_examples(wave, LM, 10, np.array([0.2, 0.6]), 1.0)
    assert examples.shape == (1, 1, 96, 64) and np.isfinite(examples).all()
    if samples == 8000:  # 0.5 s of tone: 48 frames of signal, then silence
        assert examples[0, 0, :40].max() > 0 and np.allclose(examples[0, 0, 60:], SILENCE, atol=1e-6)
    else:  # shorter than one 25 ms window: silence only
        np.testing.assert_allclose(examples, SILENCE, atol=1e-6)


@pytest.mark.parametrize("wave", [None, np.zeros(0, np.float32)], ids=["none", "empty"])
def test_no_audio_gives_no_examples(wave):
    examples, times = segment_examples(wave, LM, 10, np.array([0.5]), 2.0, return_times=True)
    assert examples.shape == (0, 1, 96, 64) and times.shape == (0,)
    assert segment_examples(wave, LM, 10, None, 2.0).shape == (0, 1, 96, 64)


def test_examples_follow_clip_times():
    wave = sine(4.0, 1000.0, on_from=2.0)  # tone only in the second half
    clip_times = np.array([0.5, 1.5, 2.5, 3.5])
    examples, times = segment_examples(wave, LM, 4, clip_times, 4.0, return_times=True)
    assert examples.shape == (4, 1, 96, 64)
    np.testing.assert_allclose(times, clip_times, atol=0.011)
    energy = examples[:, 0, :, htk_band_of(1000.0)].mean(axis=1)
    assert energy[0] < SILENCE + 1 and energy[1] < SILENCE + 1
    assert energy[2] > 0 and energy[3] > 0


def test_uniform_spread_without_matching_clips_and_duration_cap():
    wave = sine(10.0)
    clip_times = np.array([1.0, 2.0])  # 2 clips for 3 examples: no alignment
    examples, times = segment_examples(wave, LM, 10, clip_times, 3.0, return_times=True)
    assert examples.shape == (3, 1, 96, 64)
    np.testing.assert_allclose(times, [0.48, 1.5, 2.52], atol=0.011)


def test_front_end_batches():
    front = LogMelFrontEnd(LM)
    x = torch.from_numpy(np.stack([sine(1.0, 500.0), sine(1.0, 2000.0)]))
    out = front(x)
    assert out.shape == (2, 98, 64)
    torch.testing.assert_close(out[1], front(x[1]))
