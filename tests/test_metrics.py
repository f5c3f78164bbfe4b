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
