"""Pitch scores on hand-made F0 tracks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from training.pitch_metrics import (
    gross_pitch_error,
    median_cents_error,
    pitch_scores,
    voicing_error,
)

# Frames: 0 both unvoiced, 1 a false alarm, 2 a miss, 3..6 voiced in both.
REFERENCE = np.array([0.0, 0.0, 100.0, 100.0, 200.0, 100.0, 150.0])
ESTIMATE = np.array([0.0, 120.0, 0.0, 100.0, 100.0, 125.0, 150.0 * 2 ** (50 / 1200)])


def test_voicing_error_counts_false_alarms_and_misses():
    assert voicing_error(REFERENCE, ESTIMATE) == pytest.approx(2 / 7)
    assert voicing_error(REFERENCE, REFERENCE) == 0.0
    assert voicing_error(REFERENCE, np.zeros(7)) == pytest.approx(5 / 7)


def test_gross_pitch_error_is_over_frames_voiced_in_both():
    # Of frames 3..6: exact, an octave down (50% off), 25% sharp, 50 cents sharp (2.9%).
    assert gross_pitch_error(REFERENCE, ESTIMATE) == pytest.approx(2 / 4)
    # 20% exactly is not more than 20%; a hair beyond is.
    assert gross_pitch_error(np.array([100.0]), np.array([120.0])) == 0.0
    assert gross_pitch_error(np.array([100.0]), np.array([120.01])) == 1.0
    assert gross_pitch_error(np.array([100.0]), np.array([79.0])) == 1.0


def test_median_cents_error_over_frames_voiced_in_both():
    # |cents| of frames 3..6: 0, 1200, 1200 log2(1.25) = 386.3, 50 -> median (50 + 386.3) / 2.
    expected = (50 + 1200 * np.log2(1.25)) / 2
    assert median_cents_error(REFERENCE, ESTIMATE) == pytest.approx(expected)
    assert median_cents_error(np.array([440.0]), np.array([220.0])) == pytest.approx(1200)


def test_no_frame_voiced_in_both_gives_none_but_a_voicing_error():
    reference, estimate = np.array([0.0, 100.0]), np.array([100.0, 0.0])
    scores = pitch_scores(reference, estimate)
    assert scores == {
        "voicing_error": 1.0,
        "gross_pitch_error": None,
        "median_cents": None,
        "frames": 2,
        "voiced_frames": 1,
    }


@pytest.mark.parametrize(
    ("reference", "estimate", "message"),
    [
        (np.zeros(3), np.zeros(4), "of one length"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
        (np.zeros(0), np.zeros(0), "empty"),
        (np.array([-1.0]), np.array([100.0]), ">= 0"),
        (np.array([100.0]), np.array([np.nan]), "finite"),
    ],
)
def test_bad_tracks_are_refused_saying_why(reference, estimate, message):
    with pytest.raises(ValueError, match=message):
        pitch_scores(reference, estimate)
