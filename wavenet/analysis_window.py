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

import math

import torch

from wavenet import mel_envelope as env
from wavenet.caching import tensor_cache
from wavenet.excitation import frame_centre
from wavenet.features import FeatureSpec
from wavenet.harmonic_synthesis import pair_ends, pair_ramps

__all__ = ["NOISE_REACH", "noise_smear", "pair_tables", "window_f0", "window_moments"]

NOISE_REACH = 2  # noise synthesis frames each side of an analysis frame that it sees


def _windows(x: torch.Tensor, first: int, count: int, frames: int, fill=0) -> torch.Tensor:
    """y[..., i, d] = x[..., i + first + d] (..., frames, count), `fill` out of range."""
    left = max(-first, 0)
    right = max(frames + count - 1 + first + left - x.shape[-1] - left, 0)
    padded = torch.nn.functional.pad(x, (left, right), value=fill)
    start = first + left
    return padded[..., start : start + frames + count - 1].unfold(-1, count, 1)


@tensor_cache(8)
def pair_tables(spec: FeatureSpec) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(first pair offset d0, L (D, 13, 2), Q (D, 13, 3)): the module docstring's tables, pair
    offsets d0 .. d0 + D - 1, kinds 2 v_left + v_right as `pair_ramps` orders them, + 4 for
    the first pair and + 8 for the last, which hold only the samples within the audio, and
    kind 12 (all 0) for pairs beyond either end:

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
    ramps = torch.nn.functional.pad(ramps, (0, 0, 0, 0, 0, 1))  # kind 12: no pair (zeros)
    window = env.stft_window(spec)
    linear = torch.zeros(count, len(ramps), 2, dtype=torch.float64)
    linear.index_add_(0, pair - d0, (window * ramps).permute(2, 0, 1))
    left, right = ramps[:, 0], ramps[:, 1]
    terms = torch.stack([left * left, 2 * left * right, right * right], 1)
    quadratic = torch.zeros(count, len(ramps), 3, dtype=torch.float64)
    quadratic.index_add_(0, pair - d0, (window**2 * terms).permute(2, 0, 1))
    return d0, (linear / window.sum()).float(), (quadratic / (window**2).sum()).float()


def _pairs(values: torch.Tensor, voiced: torch.Tensor, spec: FeatureSpec, *terms) -> tuple:
    """Each frame's window over the pairs: the tables' weights L (B, 1, frames, D, 2) and Q
    (B, 1, frames, D, 3) by the pairs' kinds, and each of `terms` (functions of the pairs'
    left and right values (B, C, pairs)) over the window (B, C, frames, D)."""
    d0, linear, quadratic = pair_tables(spec)
    count, frames = len(linear), values.shape[-1]
    left, right = pair_ends(values, voiced)
    v_left, v_right = pair_ends(voiced.long(), torch.ones_like(voiced))
    kind = 2 * v_left + v_right
    kind[:, 0] += 4
    kind[:, -1] += 8 if kind.shape[-1] > 1 else 0
    kinds = _windows(kind, d0, count, frames, fill=len(linear[0]) - 1)  # (B, frames, D)
    offsets = torch.arange(count, device=values.device)
    linear, quadratic = linear.to(values.device), quadratic.to(values.device)
    weights = linear[offsets, kinds].unsqueeze(1), quadratic[offsets, kinds].unsqueeze(1)
    return *weights, *(_windows(term(left, right), d0, count, frames) for term in terms)


def window_moments(values: torch.Tensor, voiced: torch.Tensor, spec: FeatureSpec):
    """M1 and M2 of per-frame values (B, C, frames) as each analysis window sees them.

    Returns:
        tuple: M1, M2, each (B, C, frames).
    """
    linear, quadratic, left, right, squares, cross, right_squares = _pairs(
        values,
        voiced,
        spec,
        lambda a, _: a,
        lambda _, b: b,
        lambda a, _: a * a,
        lambda a, b: a * b,
        lambda _, b: b * b,
    )
    first = (linear[..., 0] * left + linear[..., 1] * right).sum(-1)
    second = quadratic[..., 0] * squares + quadratic[..., 1] * cross
    second = (second + quadratic[..., 2] * right_squares).sum(-1)
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
    linear, _, left, right = _pairs(f0.unsqueeze(1), f0 > 0, spec, lambda a, _: a, lambda _, b: b)
    weight = linear.sum(-1)
    mass = weight.sum(-1).clamp(min=1e-12)
    mean = (linear[..., 0] * left + linear[..., 1] * right).sum(-1) / mass
    root = ((right - left).abs() * (spec.n_fft / spec.sample_rate)).sqrt()
    beta = spec.n_fft / spec.hop_length * ((weight * root).sum(-1) / mass) ** 2
    return mean[:, 0], beta[:, 0]


@tensor_cache(8)
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
    padded = torch.nn.functional.pad(level, (NOISE_REACH, NOISE_REACH))
    around = [padded[..., e : e + frames] for e in range(2 * NOISE_REACH + 1)]
    total = torch.zeros_like(level)
    for a, one in enumerate(around):
        weighted = table[a][a] * one
        for b in range(a + 1, len(around)):
            weighted = weighted + 2 * table[a][b] * around[b]
        total += weighted * one
    return total.clamp(min=0).sqrt()
