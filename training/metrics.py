"""Scores for training and evaluation, as small pure functions.

Each audio metric takes the real waveform first and the synthesised one second, both 1-D
float arrays in [-1, 1] at the same rate, and compares them over their common length.
Metrics that cannot apply (PESQ at rates other than 16 kHz, clips too short for STOI)
return None with the reason, so a report can say why a cell is empty.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from wavenet import losses
from wavenet.features import FeatureSpec

__all__ = [
    "STFT_RESOLUTIONS",
    "log_mel_l1",
    "multi_resolution_stft_distance",
    "nll_bits",
    "noise_floor_db",
    "periodicity",
    "pesq_wideband",
    "stoi_score",
    "voiced_periodicity",
]

# The metric's (n_fft, hop) at 16 kHz: the training loss's own, so that the `mrstft` column of
# an evaluation and the `stft` learning curve of a run with the default resolutions measure
# the same thing (up to the padded edges). They scale with the sample rate, each window
# spanning the same time.
STFT_RESOLUTIONS = losses.STFT_RESOLUTIONS
PERIODICITY_FRAME = 0.04  # seconds: two periods of a 50 Hz voice


def nll_bits(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood in bits per sample.

    nll = -mean_t log2 softmax(logits[:, :, t])[classes[:, t]]

    Args:
        logits (Tensor): Class scores (B, 256, T).
        classes (Tensor): True mu-law classes (B, T), int64.

    Returns:
        Tensor: Scalar; log2(256) = 8 bits for a uniform prediction.
    """
    return F.cross_entropy(logits.float(), classes) / math.log(2.0)


def _common(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    length = min(len(reference), len(estimate))
    if length == 0:
        raise ValueError("cannot score empty audio")
    return (
        np.asarray(reference[:length], dtype=np.float32),
        np.asarray(estimate[:length], dtype=np.float32),
    )


def log_mel_l1(reference: np.ndarray, estimate: np.ndarray, spec: FeatureSpec) -> float:
    """Mean absolute difference of the two log-mel spectrograms (natural log), per bin.

    L = mean_{m,f} |log mel_ref[m, f] - log mel_est[m, f]|, features from `spec.extract`:
    the distillation's log-mel term (`wavenet.losses.log_mel_loss`) as a metric.
    """
    reference, estimate = _common(reference, estimate)
    distance = losses.log_mel_loss(
        torch.from_numpy(estimate)[None], torch.from_numpy(reference)[None], spec
    )
    return float(distance)


def multi_resolution_stft_distance(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int
) -> float:
    """The multi-resolution STFT loss of the training objective, as a metric.

    `wavenet.losses.multi_resolution_stft_loss` (spectral convergence plus log-magnitude L1,
    averaged over resolutions) at STFT_RESOLUTIONS scaled to `sample_rate`, with zero-padded
    edges instead of reflected ones, so that a clip cut short by a time budget (shorter than
    half the largest FFT) still scores; on clips many windows long the edges hardly count.
    0 for identical audio.
    """
    reference, estimate = _common(reference, estimate)
    scale = sample_rate / 16000
    resolutions = tuple(
        (max(int(n_fft * scale), 4), max(int(hop * scale), 1)) for n_fft, hop in STFT_RESOLUTIONS
    )
    distance = losses.multi_resolution_stft_loss(
        torch.from_numpy(estimate), torch.from_numpy(reference), resolutions, pad_mode="constant"
    )
    return float(distance)


def pesq_wideband(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int
) -> tuple[float | None, str | None]:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO 1.0-4.6) of the estimate against the reference.

    Returns:
        tuple: (score, None), or (None, reason) when PESQ does not apply.
    """
    if sample_rate != 16000:
        return None, f"PESQ wide-band is defined at 16 kHz only (audio is {sample_rate} Hz)"
    from pesq import PesqError, pesq

    reference, estimate = _common(reference, estimate)
    if len(reference) < sample_rate // 4:
        return None, "PESQ needs at least 0.25 s of audio; the clip is shorter"
    try:
        return float(pesq(sample_rate, reference, estimate, "wb")), None
    except PesqError as error:
        return None, f"PESQ could not score the clip ({type(error).__name__})"


def stoi_score(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int
) -> tuple[float | None, str | None]:
    """Short-time objective intelligibility (0-1) of the estimate against the reference.

    Returns:
        tuple: (score, None), or (None, reason) when the clip is too short for STOI's
        30-frame (384 ms) analysis after its silent frames are removed.
    """
    from pystoi import stoi

    reference, estimate = _common(reference, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(stoi(reference, estimate, sample_rate, extended=False))
    too_short = [w for w in caught if "Not enough STFT frames" in str(w.message)]
    if too_short or not math.isfinite(score):
        return None, "STOI needs at least 384 ms of non-silent audio; the clip is shorter"
    return score, None


def _best_autocorrelation(
    frames: np.ndarray, sample_rate: int, min_f0: float, max_f0: float
) -> np.ndarray:
    """The highest normalised autocorrelation of each frame over one pitch period's lags.

        r(k) = sum_t x[t] x[t+k] / sqrt(sum_t x[t]^2 sum_t x[t+k]^2),  t < W = N - k_max,

    maximised over k in [sample_rate / max_f0, sample_rate / min_f0]: 1 for a frame that
    repeats exactly at some period, near 0 for white noise.

    Args:
        frames (ndarray): Frames (F, N), N > k_max.

    Returns:
        ndarray: max_k r(k) per frame (F,); -1 for a silent frame.
    """
    lags = range(int(sample_rate / max_f0), int(sample_rate / min_f0) + 1)
    width = frames.shape[-1] - lags[-1]
    head = frames[:, :width]
    best = np.full(len(frames), -1.0)
    for lag in lags:
        tail = frames[:, lag : lag + width]
        norm = np.sqrt((head**2).sum(axis=1) * (tail**2).sum(axis=1)) + 1e-12
        best = np.maximum(best, (head * tail).sum(axis=1) / norm)
    return best


def periodicity(
    audio: np.ndarray, sample_rate: int, min_f0: float = 60.0, max_f0: float = 400.0
) -> float | None:
    """How periodic the loud parts of a waveform are: 1 for a pure tone, near 0 for noise.

    The audio is cut into 40 ms frames every 10 ms. For each frame within 30 dB of the
    loudest, the normalised autocorrelation r(k) = sum x[t] x[t+k] / sqrt(sum x[t]^2
    sum x[t+k]^2) is maximised over lags k of one pitch period (1 / max_f0 to 1 / min_f0
    seconds). The score is the 90th percentile of those maxima over frames: voiced speech
    scores 0.8-0.95, whispered (noise-excited) speech and noise stay low, whatever their
    spectral envelope, so it tells harmonics apart from a whisper.

    Returns:
        float | None: The score, or None for audio shorter than one frame or silent.
    """
    x = np.asarray(audio, dtype=np.float64)
    frame, hop = int(PERIODICITY_FRAME * sample_rate), int(0.01 * sample_rate)
    if len(x) < frame or frame <= int(sample_rate / min_f0):
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    energy = (frames**2).sum(axis=1)
    if energy.max() <= 0:
        return None
    loud = frames[energy >= energy.max() * 10 ** (-30 / 10)]
    return float(np.percentile(_best_autocorrelation(loud, sample_rate, min_f0, max_f0), 90))


def voiced_periodicity(
    audio: np.ndarray,
    voiced: np.ndarray,
    hop_length: int,
    sample_rate: int,
    centre: float,
    min_f0: float = 60.0,
    max_f0: float = 400.0,
) -> float | None:
    """`periodicity` where a pitch tracker found the real recording voiced: the mean, over
    those frames, of the frame's best normalised autocorrelation.

        P = mean_{i : voiced_i} max_k r_i(k),   frame i = the 40 ms of audio centred on
                                                sample c_i = i * hop_length + centre

    with r_i(k) and the lags k as in `periodicity`. A synthesis with harmonics where the
    speech is voiced scores near 1 (real speech about 0.8-0.9: onsets, glides and breath
    lower it), a whisper or noise low. Frames whose 40 ms reach past either end of the audio
    (a clip cut short, the first and last 20 ms) are left out.

    Args:
        audio (ndarray): Waveform (samples,).
        voiced (ndarray): The tracker's voicing per mel frame (frames,), bool (F0 > 0).
        hop_length (int): Samples between frames.
        sample_rate (int): Rate of `audio`, Hz.
        centre (float): Sample offset of frame 0's centre (`wavenet.excitation.frame_centre`).

    Returns:
        float | None: P, or None when no voiced frame fits in the audio.
    """
    x = np.asarray(audio, dtype=np.float64)
    frame = int(PERIODICITY_FRAME * sample_rate)
    if frame <= int(sample_rate / min_f0):
        return None
    starts = np.flatnonzero(np.asarray(voiced, dtype=bool)) * hop_length + round(centre - frame / 2)
    starts = starts[(starts >= 0) & (starts + frame <= len(x))]
    if len(starts) == 0:
        return None
    frames = x[starts[:, None] + np.arange(frame)]
    return float(_best_autocorrelation(frames, sample_rate, min_f0, max_f0).mean())


def noise_floor_db(
    reference: np.ndarray,
    estimate: np.ndarray,
    frame_length: int,
    below_peak_db: float = 50.0,
    floor_db: float = 90.0,
) -> float | None:
    """How much louder than the real recording the estimate is where the recording is silent.

    Both waveforms are cut into frames of `frame_length` samples (non-overlapping, from the
    first sample; a ragged end is dropped), with energies E_i = sum_t x_i[t]^2. A frame is
    silent where the reference is more than `below_peak_db` below its loudest frame,
    R_i < max_j R_j 10^(-below_peak_db / 10), and the score is

        N = median_{i silent} 10 log10((S_i + e) / (R_i + e)),  e = max_j R_j 10^(-floor_db / 10)

    (S: the estimate's energies, R: the reference's; e stands for the quantisation floor of a
    16-bit recording, so digital silence compares finitely). 0 dB: the estimate is as quiet
    as the recording in its pauses; +20 dB: its pauses are 20 dB louder (a hiss).

    Returns:
        float | None: N in dB, or None when no frame is silent or the reference is silent.
    """
    reference, estimate = _common(reference, estimate)
    count = len(reference) // frame_length
    if count == 0:
        return None
    shape = (count, frame_length)
    real = (reference[: count * frame_length].astype(np.float64).reshape(shape) ** 2).sum(axis=1)
    made = (estimate[: count * frame_length].astype(np.float64).reshape(shape) ** 2).sum(axis=1)
    peak = real.max()
    silent = real < peak * 10 ** (-below_peak_db / 10)
    if peak <= 0 or not silent.any():
        return None
    floor = peak * 10 ** (-floor_db / 10)
    return float(np.median(10 * np.log10((made[silent] + floor) / (real[silent] + floor))))
