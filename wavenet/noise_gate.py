"""The source's noise gated at hop resolution: none where the recording is silent.

A frame's mel reads its neighbours through the analysis window, so a silent frame beside an
onset reads part of the onset (a hop away, a fifth of its energy), and the noise synthesis
spreads each frame's noise over the window once more. Without a gate the source's noise
reaches the silent hop blocks beside speech 40-60 dB above a recording's digital silence.
The gate estimates each block's energy from the frames' and lets through no more noise than
`ratio` times it:

    E_i = sum_k c_k b_(i+k),   c_k = sum of w^2 over hop block k of frame i's window (k = -1..1)
    b <- b * C^T (E / C b),    `iterations` times from b = E (Richardson-Lucy: b stays >= 0)
    p_j = sum_k d_k F_(j-k),   d_k likewise from w^4 (WOLA: the noise's window applied twice)
    G_j = min(1, sqrt(ratio * b_j / p_j))

E: the mel's energy per frame (`mel_envelope.noise_envelope` of the mel, summed over bins),
F: the noise's (its magnitudes summed over bins), both in STFT-bin units; p: the energy the
synthesis puts in block j. The noise is multiplied by G, linear between block centres. A
block inside speech has b_j well above its noise p_j (the harmonics' energy counts in b):
G = 1. The windows' outermost quarters (k = +-2, under 0.2 % of the weight) are left out.

G_j reads frames j +- (2 iterations + 1) (`gate_reach`).
"""

from __future__ import annotations

import torch

from wavenet import mel_envelope as env
from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec

__all__ = ["apply_gate", "gate_reach", "noise_gate"]


@tensor_cache(8)
def _block_weights(spec: FeatureSpec, power: int) -> torch.Tensor:
    """sum of w^power over hop blocks -1, 0, 1 of a frame's window, normalised (3,)."""
    window = env.stft_window(spec).double() ** power
    hop, left = spec.hop_length, (spec.n_fft - spec.hop_length) // 2
    sums = []
    for block in (-1, 0, 1):
        low, high = max(block * hop + left, 0), min((block + 1) * hop + left, spec.n_fft)
        sums.append(window[low:high].sum() if high > low else window.new_zeros(()))
    weights = torch.stack(sums)
    return weights / weights.sum()


def _smooth(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """y_i = sum_k weights[k + 1] x_(i+k), k = -1..1, the ends held (B, frames)."""
    padded = torch.nn.functional.pad(values.unsqueeze(1), (1, 1), mode="replicate")[:, 0]
    frames = values.shape[-1]
    return sum(weights[k] * padded[:, k : k + frames] for k in range(3))


def gate_reach(iterations: int) -> int:
    """Frames each side of a block that its gain reads."""
    return 2 * iterations + 1


def noise_gate(
    log_mel: torch.Tensor,
    magnitude: torch.Tensor,
    spec: FeatureSpec,
    iterations: int,
    ratio: float,
) -> torch.Tensor:
    """G (B, 1, frames) in [0, 1] (module docstring).

    Args:
        log_mel (Tensor): The mel the source synthesises (B, n_mels, frames), natural log.
        magnitude (Tensor): The noise's STFT magnitudes (B, n_fft // 2 + 1, frames).
        spec (FeatureSpec): Framing and window.
        iterations (int): Deconvolution steps.
        ratio (float): Noise energy let through, relative to the block's estimated energy.
    """
    analysis = _block_weights(spec, 2).to(magnitude.device)
    synthesis = _block_weights(spec, 4).to(magnitude.device)
    tiny = torch.finfo(torch.float64).tiny
    mel = env.linear_mel(log_mel.double(), spec)
    energy = env.noise_envelope(mel, spec).square().sum(1)
    blocks = energy
    for _ in range(iterations):
        blocks = blocks * _smooth(
            energy / _smooth(blocks, analysis).clamp(min=tiny), analysis.flip(0)
        )
    noise = _smooth(magnitude.double().square().sum(1), synthesis.flip(0))
    gain = (ratio * blocks / noise.clamp(min=tiny)).clamp(max=1.0).sqrt()
    return torch.where(noise > 0, gain, torch.ones_like(gain)).float().unsqueeze(1)


def apply_gate(noise: torch.Tensor, gate: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """noise (B, frames * hop) times G (B, 1, frames), linear between block centres (held
    beyond the first and last)."""
    samples = gate.shape[-1] * spec.hop_length
    gain = torch.nn.functional.interpolate(gate, size=samples, mode="linear", align_corners=False)
    return noise * gain[:, 0]
