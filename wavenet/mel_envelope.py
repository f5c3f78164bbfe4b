"""Reading a log-mel back as linear-frequency quantities: sinusoids and a noise envelope.

`FeatureSpec.extract` computes mel[m] = sum_j W[m, j] |X_j|^p (p = spec.power) from the
Hann-windowed STFT X. Two inverses of it, each exact for the signal it assumes:

- A harmonic frame, x_t = sum_k A_k sin(2 pi k f0 t / sr + theta_k), whose window lobes do
  not overlap (f0 above ~4 bins), gives mel[m] = sum_k A_k^p R[m, k f0], where R[:, f] is the
  mel of a unit sinusoid at f (`sinusoid_mel_response`); `wavenet.harmonic_response` fits the
  A_k, its F0 gliding within the window.
- Noise with expected |X_j|^p = S_j^p gives mel[m] = sum_j W[m, j] S_j^p, read back at the
  band's centroid c_m as S^p(c_m) = mel[m] / sum_j W[m, j] and interpolated linearly between
  centroids (`noise_envelope`), the ends held.

Both assume the signal stationary over the analysis window; `wavenet.mel_prediction` adds
what that leaves out (level changes within the window, noise crossfades).
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec

__all__ = [
    "OVERSAMPLE",
    "bands_to_bins",
    "level_to_mel",
    "linear_mel",
    "mel_filterbank",
    "noise_envelope",
    "noise_level",
    "sinusoid_mel_response",
    "sinusoid_response_table",
    "stft_window",
]

OVERSAMPLE = 8  # grid points per FFT bin on which sinusoid_mel_response is tabulated


def linear_mel(log_mel: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """mel = exp(log_mel) - floor: bands at the log floor (within float rounding) read as 0."""
    above = log_mel > math.log(spec.log_floor) + 1e-5
    return torch.where(above, log_mel.exp() - spec.log_floor, 0.0).clamp(min=0)


@tensor_cache(8)
def mel_filterbank(spec: FeatureSpec) -> torch.Tensor:
    """W (n_mels, n_fft // 2 + 1): the filterbank `FeatureSpec.extract` applies."""
    return AF.melscale_fbanks(
        spec.n_fft // 2 + 1,
        spec.f_min,
        spec.f_max,
        spec.n_mels,
        spec.sample_rate,
        spec.mel_norm,
        spec.mel_scale,
    ).T.contiguous()


@tensor_cache(8)
def stft_window(spec: FeatureSpec) -> torch.Tensor:
    """The periodic Hann window of win_length, centred in n_fft samples (n_fft,), as torch.stft."""
    window = torch.hann_window(spec.win_length, dtype=torch.float64)
    left = (spec.n_fft - spec.win_length) // 2
    return torch.nn.functional.pad(window, (left, spec.n_fft - spec.win_length - left))


@tensor_cache(8)
def sinusoid_response_table(spec: FeatureSpec) -> torch.Tensor:
    """R on a grid of OVERSAMPLE points per bin, 0 Hz to Nyquist: (grid, n_mels), float32.

    Each grid frequency's unit cosine and sine are windowed and transformed; their |X|^p are
    averaged (which differ only near 0 Hz and Nyquist, where the lobe meets its image).
    """
    grid = spec.n_fft // 2 * OVERSAMPLE + 1
    freqs = torch.arange(grid, dtype=torch.float64) * spec.sample_rate / (spec.n_fft * OVERSAMPLE)
    angle = 2 * torch.pi * freqs.unsqueeze(1) * torch.arange(spec.n_fft) / spec.sample_rate
    window = stft_window(spec)
    spectra = [
        torch.fft.rfft(window * wave(angle)).abs() ** spec.power for wave in (torch.cos, torch.sin)
    ]
    magnitude = (spectra[0] + spectra[1]) / 2
    return (magnitude @ mel_filterbank(spec).double().T).float()


def sinusoid_mel_response(freqs: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """R[..., m]: the (linear) mel of a unit-amplitude sinusoid at each frequency in Hz.

    Args:
        freqs (Tensor): Frequencies (...), Hz, in [0, sample_rate / 2].

    Returns:
        Tensor: (..., n_mels), linearly interpolated from a table 1/8 bin apart.
    """
    table = sinusoid_response_table(spec).to(freqs.device)
    position = (freqs.float() * (spec.n_fft * OVERSAMPLE / spec.sample_rate)).clamp(
        0, len(table) - 1
    )
    below = position.floor().long().clamp(max=len(table) - 2)
    weight = (position - below).unsqueeze(-1)
    return table[below] * (1 - weight) + table[below + 1] * weight


@tensor_cache(8)
def _band_centroids(spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Each band's centroid as a fractional FFT bin (n_mels,), and its weight sum (n_mels,)."""
    bank = mel_filterbank(spec)
    weight = bank.sum(-1)
    centroid = (bank * torch.arange(bank.shape[-1])).sum(-1) / weight.clamp(min=1e-20)
    return centroid, weight


@tensor_cache(8)
def _bin_weights(spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each bin's lower and upper band (bins,) and the upper one's weight, 0 outside
    [f_min, f_max] (bins, 2): `bands_to_bins`'s interpolation."""
    centroid = _band_centroids(spec)[0]
    bins = torch.arange(spec.n_fft // 2 + 1, dtype=centroid.dtype)
    upper = torch.searchsorted(centroid, bins).clamp(1, len(centroid) - 1)
    lower = upper - 1
    weight = ((bins - centroid[lower]) / (centroid[upper] - centroid[lower])).clamp(0, 1)
    hz = bins * (spec.sample_rate / spec.n_fft)
    inside = ((hz >= spec.f_min) & (hz <= spec.f_max)).to(weight.dtype)
    return lower, upper, torch.stack([(1 - weight) * inside, weight * inside], -1).float()


def bands_to_bins(values: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Per-band values (B, n_mels, frames) interpolated linearly between the bands'
    centroids to every FFT bin (B, n_fft // 2 + 1, frames), the ends held; zero outside
    [f_min, f_max], of which the mel says nothing."""
    lower, upper, weights = (t.to(values.device) for t in _bin_weights(spec))
    weights = weights.to(values.dtype)
    return values[:, lower] * weights[:, :1] + values[:, upper] * weights[:, 1:]


def noise_level(mel: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """S^p of noise with this mel at each band's centroid (B, n_mels, frames): mel / sum W."""
    weight = _band_centroids(spec)[1].to(mel.device)
    return mel / weight.clamp(min=1e-20).unsqueeze(-1)


def noise_envelope(mel: torch.Tensor, spec: FeatureSpec, level: torch.Tensor | None = None):
    """Expected STFT magnitude S_j of noise with this mel, per FFT bin (module docstring).

    Args:
        mel (Tensor): Linear mel (B, n_mels, frames).
        level (Tensor | None): S^p at the centroids (B, n_mels, frames) if not the mel's own
            (`noise_level`).

    Returns:
        Tensor: S (B, n_fft // 2 + 1, frames) >= 0.
    """
    level = noise_level(mel, spec) if level is None else level
    return bands_to_bins(level, spec).clamp(min=0).pow(1 / spec.power)


@tensor_cache(8)
def level_to_mel(spec: FeatureSpec) -> torch.Tensor:
    """P (n_mels, n_mels): the mel sum_j W[m, j] S_j^p of noise whose S^p is interpolated
    from the centroid levels L (`bands_to_bins`) is P L: W times the interpolation."""
    eye = torch.eye(spec.n_mels).unsqueeze(0)
    return mel_filterbank(spec) @ bands_to_bins(eye, spec)[0]
