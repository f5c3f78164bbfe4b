"""How the mel's analysis window sees a frame-rate synthesis, computed at frame rate.

Analysis frame i (`FeatureSpec.extract`) weights the samples around frame centre i with the
window w. A harmonic synthesis (`wavenet.harmonic_synthesis`) is linear in each pair's end
values (pair j spans centres j - 1 and j), with ramps c_L, c_R set by the ends' voicing, so
what the window collects from per-frame values x (B, C, frames) is a short filter over pairs:

    frame i's window   |<--------- n_fft --------->|
    pairs              | i-1  |  i   | i+1  | i+2  |      (n_fft = 4 hops, centre = hop / 2)

    M1_i = sum_n w(n) x(n) / sum w         = sum_d  L[d, kind, .] . (x_L, x_R)_{i+d}
    M2_i = sum_n w(n)^2 x(n)^2 / sum w^2    = sum_d  Q[d, kind, .] . (x_L^2, 2 x_L x_R, x_R^2)

The tables L and Q (pair offset d, the pair's kind by voicing, the term) are exact sums over
the window's samples. WOLA noise (`wavenet.noise_synthesis`) crossfades its frames' filters
with weights c_e(n) = w_e(n)^2 / sum_e' w_e'(n)^2, so frame i sees the quadratic form

    |N|_i^2 = sum_{e, e'} K[e, e'] S_{i+e} S_{i+e'},   K[e, e'] = sum_n w^2 c_e c_e' / sum w^2

over the noise magnitudes S of the synthesis frames e = -2..2 around it (further ones weigh
below 1e-4 for the default spec and are left out, which keeps the reach at 2 frames).
"""

from __future__ import annotations

import functools
import math

import torch

from wavenet import mel_envelope as env
from wavenet.excitation import frame_centre
from wavenet.features import FeatureSpec
from wavenet.harmonic_synthesis import pair_ends, pair_ramps

__all__ = ["NOISE_REACH", "noise_smear", "pair_tables", "window_f0", "window_moments"]

NOISE_REACH = 2  # noise synthesis frames each side of an analysis frame that it sees


def _shift(x: torch.Tensor, offset: int, frames: int) -> torch.Tensor:
    """y[..., i] = x[..., i + offset] for i < frames, zero where i + offset is out of range."""
    start, stop = max(offset, 0), min(offset + frames, x.shape[-1])
    out = x.new_zeros(*x.shape[:-1], frames)
    if stop > start:
        out[..., start - offset : stop - offset] = x[..., start:stop]
    return out


@functools.lru_cache(maxsize=8)
def pair_tables(spec: FeatureSpec) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(first pair offset d0, L (D, 12, 2), Q (D, 12, 3)): the module docstring's tables, pair
    offsets d0 .. d0 + D - 1, kinds 2 v_left + v_right as `pair_ramps` orders them, + 4 for
    the first pair and + 8 for the last, which hold only the samples within the audio:

        audio      |0       first         ...       F hop|
        pairs   [ pair 0 )[ pair 1 ) ... [ pair F - 1 )[ pair F )
    """
    hop, n_fft = spec.hop_length, spec.n_fft
    first = math.ceil(frame_centre(spec))
    samples = torch.arange(n_fft) - (n_fft - hop) // 2  # relative to i * hop
    pair = torch.div(samples - first, hop, rounding_mode="floor") + 1
    within = samples - first - (pair - 1) * hop
    d0, count = int(pair.min()), int(pair.max() - pair.min()) + 1
    ends = torch.tensor([[False, False], [False, True], [True, False], [True, True]])
    ramps = pair_ramps(ends, spec)[:, 1].double()  # (4 kinds, 2, hop)
    offset = torch.arange(hop)
    inside = [torch.ones(hop), (offset >= hop - first).double(), (offset < first).double()]
    ramps = torch.cat([ramps * mask for mask in inside])[..., within]  # (12, 2, n_fft)
    window = env.stft_window(spec)
    linear = torch.zeros(count, len(ramps), 2, dtype=torch.float64)
    linear.index_add_(0, pair - d0, (window * ramps).permute(2, 0, 1))
    left, right = ramps[:, 0], ramps[:, 1]
    terms = torch.stack([left * left, 2 * left * right, right * right], 1)
    quadratic = torch.zeros(count, len(ramps), 3, dtype=torch.float64)
    quadratic.index_add_(0, pair - d0, (window**2 * terms).permute(2, 0, 1))
    return d0, (linear / window.sum()).float(), (quadratic / (window**2).sum()).float()


def _pairs(values: torch.Tensor, voiced: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pair ends of values (B, C, pairs) each, and each pair's kind (B, pairs)."""
    left, right = pair_ends(values, voiced)
    v_left, v_right = pair_ends(voiced.long(), torch.ones_like(voiced))
    kind = 2 * v_left + v_right
    kind[:, 0] += 4
    kind[:, -1] += 8 if kind.shape[-1] > 1 else 0
    return left, right, kind


def window_moments(values: torch.Tensor, voiced: torch.Tensor, spec: FeatureSpec):
    """M1 and M2 of per-frame values (B, C, frames) as each analysis window sees them.

    Returns:
        tuple: M1, M2, each (B, C, frames).
    """
    d0, linear, quadratic = pair_tables(spec)
    linear, quadratic = linear.to(values.device), quadratic.to(values.device)
    left, right, kind = _pairs(values, voiced)
    frames = values.shape[-1]
    first = torch.zeros_like(values)
    second = torch.zeros_like(values)
    for index in range(len(linear)):
        lin, quad = linear[index][kind].unsqueeze(1), quadratic[index][kind].unsqueeze(1)
        one = lin[..., 0] * left + lin[..., 1] * right
        two = (quad[..., 0] * left + quad[..., 1] * right) * left + quad[..., 2] * right * right
        first += _shift(one, d0 + index, frames)
        second += _shift(two, d0 + index, frames)
    return first, second


def window_f0(f0: torch.Tensor, spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The F0 a harmonic has in each analysis window, and how far it glides there.

    f_bar is F0 averaged with the window's weight on the voiced samples. The glide is the
    sweep of a linear chirp whose stationary-phase magnitude sum, integral w sqrt|f'| dt,
    equals the track's: beta = (n_fft / hop) (sum_d W_d sqrt|Delta_d| / sum_d W_d)^2, with
    Delta_d the F0 change over pair i + d in FFT bins and W_d the window's weight on it.
    Harmonic k glides k beta.

    Args:
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.

    Returns:
        tuple: f_bar (B, frames), Hz, and beta (B, frames), bins; 0 where no voiced sample
        is in the window.
    """
    d0, linear, _ = pair_tables(spec)
    linear = linear.to(f0.device)
    left, right, kind = _pairs(f0.unsqueeze(1), f0 > 0)
    root = ((right - left).abs() * (spec.n_fft / spec.sample_rate)).sqrt()
    frames = f0.shape[-1]
    mass, mean, glide = (torch.zeros_like(f0.unsqueeze(1)) for _ in range(3))
    for index in range(len(linear)):
        lin = linear[index][kind].unsqueeze(1)
        weight = lin.sum(-1)
        mass += _shift(weight, d0 + index, frames)
        mean += _shift(lin[..., 0] * left + lin[..., 1] * right, d0 + index, frames)
        glide += _shift(weight * root, d0 + index, frames)
    mass = mass.clamp(min=1e-12)
    beta = spec.n_fft / spec.hop_length * (glide / mass) ** 2
    return (mean / mass)[:, 0], beta[:, 0]


@functools.lru_cache(maxsize=8)
def _noise_table(spec: FeatureSpec) -> torch.Tensor:
    """K (2 R + 1, 2 R + 1), R = NOISE_REACH (module docstring), with the interior overlap."""
    hop, n_fft = spec.hop_length, spec.n_fft
    window = env.stft_window(spec)
    squared = window**2
    reach = math.ceil(n_fft / hop)
    padded = torch.nn.functional.pad(squared, (2 * reach * hop, 2 * reach * hop))
    middle = 2 * reach * hop

    def shifted(offset: int) -> torch.Tensor:  # w(n - offset * hop)^2 on frame 0's samples
        return padded[middle - offset * hop : middle - offset * hop + n_fft]

    overlap = sum(shifted(e) for e in range(-2 * reach, 2 * reach + 1))
    fades = torch.stack([shifted(e) / overlap for e in range(-NOISE_REACH, NOISE_REACH + 1)])
    return ((fades.unsqueeze(1) * fades.unsqueeze(0) * squared).sum(-1) / squared.sum()).float()


def noise_smear(level: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """|N|_i = sqrt(sum K[e, e'] S_{i+e} S_{i+e'}) of noise magnitudes (B, C, frames) >= 0."""
    table = _noise_table(spec).tolist()
    frames = level.shape[-1]
    shifted = [_shift(level, e, frames) for e in range(-NOISE_REACH, NOISE_REACH + 1)]
    total = torch.zeros_like(level)
    for a in range(len(shifted)):
        total += table[a][a] * shifted[a] * shifted[a]
        for b in range(a + 1, len(shifted)):
            total += 2 * table[a][b] * shifted[a] * shifted[b]
    return total.clamp(min=0).sqrt()
