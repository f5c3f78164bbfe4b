"""The MR-STFT metric is the training loss's function, at its resolutions scaled to the rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training import metrics
from wavenet import losses


def noise(samples: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(samples) * 0.1).astype(np.float32)


def loss(reference: np.ndarray, estimate: np.ndarray, resolutions) -> float:
    """The training loss on the same clips, with the metric's zero-padded edges."""
    real, generated = torch.from_numpy(reference), torch.from_numpy(estimate)
    distance = losses.multi_resolution_stft_loss(generated, real, resolutions, pad_mode="constant")
    return distance.item()


def test_the_mrstft_metric_is_the_training_loss_at_the_same_resolutions():
    reference, estimate = noise(8000, 0), noise(8000, 1)
    value = metrics.multi_resolution_stft_distance(reference, estimate, 16000)
    assert value == pytest.approx(loss(reference, estimate, losses.STFT_RESOLUTIONS), rel=1e-6)
    doubled = tuple((2 * n_fft, 2 * hop) for n_fft, hop in losses.STFT_RESOLUTIONS)
    value_32k = metrics.multi_resolution_stft_distance(reference, estimate, 32000)
    assert value_32k == pytest.approx(loss(reference, estimate, doubled), rel=1e-6)
    # Reflected edges (the training loss's) differ only in the edge frames of a long clip.
    reflected = losses.multi_resolution_stft_loss(
        torch.from_numpy(estimate), torch.from_numpy(reference)
    )
    assert value == pytest.approx(reflected.item(), rel=0.05)


def test_twice_the_amplitude_scores_one_plus_log_two():
    """|G| = 2 |Y| in every bin: spectral convergence ||Y - 2Y|| / ||Y|| = 1 and
    log-magnitude L1 = ln 2 at every resolution (the power floor is negligible here)."""
    reference = noise(16000, 2)
    value = metrics.multi_resolution_stft_distance(reference, 2 * reference, 16000)
    assert value == pytest.approx(1 + math.log(2), abs=1e-3)
    assert metrics.multi_resolution_stft_distance(reference, reference, 16000) == 0.0


def test_a_clip_shorter_than_half_the_longest_fft_still_scores():
    longest = max(n_fft for n_fft, _ in losses.STFT_RESOLUTIONS)
    short, other = noise(longest // 4, 3), noise(longest // 4, 4)
    value = metrics.multi_resolution_stft_distance(short, other, 16000)
    assert math.isfinite(value) and value > 0
    assert metrics.multi_resolution_stft_distance(short, short, 16000) == 0.0


# Periodicity in voiced frames and the noise floor, on hand-made signals.

RATE, HOP = 16000, 256


def sine_with_gap(seconds: float = 1.5, gap: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """A 150 Hz sine at amplitude 0.5 with exact digital silence over `gap` (seconds)."""
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.5 * np.sin(2 * np.pi * 150.0 * t)
    audio[int(gap[0] * RATE) : int(gap[1] * RATE)] = 0.0
    return audio.astype(np.float32)


def test_noise_floor_of_an_exact_copy_is_zero_db_and_of_a_hiss_large_and_positive():
    real = sine_with_gap()
    assert metrics.noise_floor_db(real, real.copy(), HOP) == 0.0
    # White noise 40 dB below the sine's power: in the gap it is 40 dB above nothing, which
    # the 90 dB floor (below the loudest block) turns into 50 dB.
    noise = np.random.default_rng(0).standard_normal(len(real)) * np.sqrt(0.125 * 1e-4)
    hissing = metrics.noise_floor_db(real, real + noise.astype(np.float32), HOP)
    assert hissing == pytest.approx(50.0, abs=1.0)
    # A recording with a hiss 80 dB down, and one 20 dB louder in the gap: +20 dB one way,
    # -20 dB the other (less 0.4 dB of the floor).
    gap = slice(int(0.55 * RATE), int(0.95 * RATE))
    quiet = real + 0.01 * noise.astype(np.float32)
    louder = quiet.copy()
    louder[gap] *= 10.0
    assert metrics.noise_floor_db(quiet, louder, HOP) == pytest.approx(20.0, abs=0.5)
    assert metrics.noise_floor_db(louder, quiet, HOP) == pytest.approx(-20.0, abs=0.5)


def test_noise_floor_needs_silent_frames():
    t = np.arange(RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 150.0 * t)).astype(np.float32)
    assert metrics.noise_floor_db(tone, tone, HOP) is None
    assert metrics.noise_floor_db(np.zeros(RATE), tone, HOP) is None
    assert metrics.noise_floor_db(tone[:100], tone[:100], HOP) is None


def test_periodicity_in_voiced_frames_is_near_one_for_a_sine_and_low_for_noise():
    real = sine_with_gap()
    voiced = np.zeros(len(real) // HOP, dtype=bool)
    voiced[5:25] = voiced[70:85] = True  # within the sine, clear of the gap
    centre = HOP / 2
    assert metrics.voiced_periodicity(real, voiced, HOP, RATE, centre) > 0.99
    noise = np.random.default_rng(1).standard_normal(len(real))
    assert metrics.voiced_periodicity(noise, voiced, HOP, RATE, centre) < 0.35
    # Only the voiced frames count: noise everywhere else leaves the sine's score alone.
    mixed = noise.copy()
    for frame in np.flatnonzero(voiced):
        middle = frame * HOP + HOP // 2
        mixed[middle - 400 : middle + 400] = real[middle - 400 : middle + 400]
    assert metrics.voiced_periodicity(mixed, voiced, HOP, RATE, centre) > 0.99


def test_periodicity_in_voiced_frames_leaves_out_frames_past_the_end():
    real = sine_with_gap()
    voiced = np.zeros(-(-len(real) // HOP), dtype=bool)  # as many frames as the mel has
    voiced[0] = voiced[-1] = True  # their 40 ms reach past the start and the end
    assert metrics.voiced_periodicity(real, voiced, HOP, RATE, HOP / 2) is None
    voiced[10] = True
    assert metrics.voiced_periodicity(real[: 5 * HOP], voiced, HOP, RATE, HOP / 2) is None
    assert metrics.voiced_periodicity(real, voiced, HOP, RATE, HOP / 2) > 0.99
