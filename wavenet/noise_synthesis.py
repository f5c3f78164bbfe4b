"""Noise with a given STFT magnitude per frame, on the mel's own frames and window.

White Gaussian noise is cut into `FeatureSpec.extract`'s frames, windowed and transformed; bin
j of frame i is scaled to the expected magnitude S_j,i (E|N_j| = sqrt(pi / 4 sum w^2) for
unit noise under a magnitude mel, its rms for a power mel), and the frames are windowed again
and overlap-added, divided by the summed squared windows (WOLA):

    white     |<- (n_fft - hop) // 2 ->| block 0 | block 1 | ... |<- rest ->|
    frame i   [i * hop, i * hop + n_fft)  -> rfft * S_i / E|N| -> irfft * window -> add
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wavenet import mel_envelope as env
from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec

__all__ = ["filtered_noise", "noise_norm", "noise_std", "white_noise"]


def white_noise(
    batch: int, frames: int, spec: FeatureSpec, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Unit white Gaussian noise (B, frames * hop + n_fft - hop): `filtered_noise`'s input."""
    length = frames * spec.hop_length + spec.n_fft - spec.hop_length
    return torch.randn(batch, length, generator=generator)


def noise_norm(spec: FeatureSpec) -> float:
    """(E|N_j|^p)^(1/p) of unit white noise's STFT bin: Rayleigh mean (p = 1), rms (p = 2)."""
    energy = float((env.stft_window(spec) ** 2).sum())
    return math.sqrt(math.pi / 4 * energy) if spec.power == 1 else math.sqrt(energy)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """sum_i frames[:, i] placed at i * hop: (B, F, n) -> (B, (F - 1) * hop + n)."""
    batch, count, size = frames.shape
    if size % hop:
        fold = dict(output_size=(1, (count - 1) * hop + size), kernel_size=(1, size))
        return nn.functional.fold(frames.transpose(1, 2), stride=(1, hop), **fold).view(batch, -1)
    parts = size // hop
    blocks = frames.view(batch, count, parts, hop)
    out = frames.new_zeros(batch, count + parts - 1, hop)
    for part in range(parts):
        out[:, part : part + count] += blocks[:, :, part]
    return out.view(batch, -1)


@tensor_cache(32)
def _overlap(spec: FeatureSpec, frames: int) -> torch.Tensor:
    """The summed squared windows of `frames` frames (1, (frames - 1) * hop + n_fft)."""
    squares = (env.stft_window(spec) ** 2).float().expand(1, frames, -1)
    return _overlap_add(squares.contiguous(), spec.hop_length).clamp(min=1e-8)


def filtered_noise(magnitude: torch.Tensor, white: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """`white` noise shaped so that its STFT on the mel's frames has expected |X| = magnitude.

    Args:
        magnitude (Tensor): Target |X_j| per bin and frame (B, n_fft // 2 + 1, frames).
        white (Tensor): From `white_noise` (B, frames * hop + n_fft - hop).

    Returns:
        Tensor: (B, frames * hop_length).
    """
    frames = magnitude.shape[-1]
    hop, n_fft = spec.hop_length, spec.n_fft
    window = env.stft_window(spec).to(magnitude)
    frames_in = white.to(magnitude).unfold(-1, n_fft, hop) * window  # (B, frames, n_fft)
    spectrum = torch.fft.rfft(frames_in) * (magnitude.transpose(1, 2) / noise_norm(spec))
    summed = _overlap_add(torch.fft.irfft(spectrum, n=n_fft) * window, hop)
    left = (n_fft - hop) // 2
    overlap = _overlap(spec, frames).to(summed.device)
    return (summed / overlap)[:, left : left + frames * hop]


def noise_std(magnitude: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Per-frame std of `filtered_noise` (B, frames): sigma^2 = sum_j H_j^2 / n_fft over all
    n_fft bins, H = magnitude / E|N| (each interior rfft bin stands for two)."""
    gain = (magnitude / noise_norm(spec)) ** 2
    full = 2 * gain.sum(1) - gain[:, 0] - gain[:, -1] * (1 - spec.n_fft % 2)
    return (full.clamp(min=0) / spec.n_fft).sqrt()
