"""Griffin-Lim inversion of a log-mel: the training-free baseline every evaluation carries."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from wavenet.features import FeatureSpec

__all__ = ["GRIFFIN_LIM_ITERATIONS", "griffin_lim"]

GRIFFIN_LIM_ITERATIONS = 32


def griffin_lim(mel: torch.Tensor, spec: FeatureSpec, seed: int = 0) -> np.ndarray:
    """Waveform (frames * hop,) from a log-mel (n_mels, frames) by Griffin-Lim, 32 iterations.

    The mel is inverted to a linear magnitude with the spec's own filterbank (librosa's
    non-negative least squares), then phases are estimated. librosa centres frame i on
    sample i * hop; `FeatureSpec.extract` centres it on i * hop + hop / 2, so the result is
    delayed by hop / 2 to line up with the real audio.
    """
    import librosa

    stft = librosa.feature.inverse.mel_to_stft(
        np.exp(mel.double().numpy()),
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        power=spec.power,
        fmin=spec.f_min,
        fmax=spec.f_max,
        htk=spec.mel_scale == "htk",
        norm=spec.mel_norm,
    )
    length = spec.samples_for(mel.shape[-1])
    with warnings.catch_warnings():
        # A clip cut short by the time budget can be shorter than one FFT; librosa warns,
        # and still returns the right number of samples.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        audio = librosa.griffinlim(
            stft,
            n_iter=GRIFFIN_LIM_ITERATIONS,
            hop_length=spec.hop_length,
            win_length=spec.win_length,
            n_fft=spec.n_fft,
            random_state=seed,
        )
    delayed = np.concatenate([np.zeros(spec.hop_length // 2), audio, np.zeros(length)])
    return delayed[:length].astype(np.float32)
