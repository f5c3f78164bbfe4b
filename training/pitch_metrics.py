"""Pitch scores, as small pure functions of a reference F0 track and an estimated one.

Both tracks are float arrays of F0 in Hz per frame (0 = unvoiced) of the same length; the
reference is the tracker's, the estimate a model's. Scores over many utterances are taken
over all their frames at once (`pitch_scores` of the concatenated tracks), so long
utterances weigh more than short ones, as every frame does the same.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GROSS_ERROR_THRESHOLD",
    "gross_pitch_error",
    "median_cents_error",
    "pitch_scores",
    "voicing_error",
]

GROSS_ERROR_THRESHOLD = 0.2  # an estimate more than 20% off the reference is a gross error


def _tracks(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.ndim != 1 or reference.shape != estimate.shape:
        raise ValueError(
            f"F0 tracks must be 1-D and of one length, got {reference.shape} and {estimate.shape}"
        )
    if reference.size == 0:
        raise ValueError("cannot score empty F0 tracks")
    if (reference < 0).any() or (estimate < 0).any() or not np.isfinite(estimate).all():
        raise ValueError("F0 must be finite and >= 0 (0 = unvoiced)")
    return reference, estimate


def voicing_error(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Share of frames whose voiced/unvoiced decision differs.

    VE = mean_t [ (r_t > 0) != (e_t > 0) ]
    """
    reference, estimate = _tracks(reference, estimate)
    return float(np.mean((reference > 0) != (estimate > 0)))


def gross_pitch_error(
    reference: np.ndarray, estimate: np.ndarray, threshold: float = GROSS_ERROR_THRESHOLD
) -> float | None:
    """Share of the frames voiced in both tracks where the estimate is more than 20% off.

    GPE = sum_t b_t [ |e_t / r_t - 1| > threshold ] / sum_t b_t,  b_t = [r_t > 0 and e_t > 0]

    Returns:
        float | None: None when no frame is voiced in both.
    """
    reference, estimate = _tracks(reference, estimate)
    both = (reference > 0) & (estimate > 0)
    if not both.any():
        return None
    off = np.abs(estimate[both] / reference[both] - 1.0) > threshold
    return float(np.mean(off))


def median_cents_error(reference: np.ndarray, estimate: np.ndarray) -> float | None:
    """Median absolute pitch error in cents over the frames voiced in both tracks.

    cents_t = 1200 |log2(e_t / r_t)|  (100 cents = one semitone, 1200 = one octave)

    Returns:
        float | None: None when no frame is voiced in both.
    """
    reference, estimate = _tracks(reference, estimate)
    both = (reference > 0) & (estimate > 0)
    if not both.any():
        return None
    return float(np.median(1200.0 * np.abs(np.log2(estimate[both] / reference[both]))))


def pitch_scores(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float | None]:
    """All pitch scores of one pair of tracks, with the frame counts behind them.

    Returns:
        dict: voicing_error, gross_pitch_error, median_cents (None where no frame is voiced
        in both), frames, and voiced_frames (voiced in the reference).
    """
    reference, estimate = _tracks(reference, estimate)
    return {
        "voicing_error": voicing_error(reference, estimate),
        "gross_pitch_error": gross_pitch_error(reference, estimate),
        "median_cents": median_cents_error(reference, estimate),
        "frames": int(reference.size),
        "voiced_frames": int((reference > 0).sum()),
    }
