"""Harmonic synthesis: frame-rate amplitudes of harmonics k = 1..K to a waveform.

    x_t = sum_k a_k,t sin(k phi_t),   phi_t the excitation's phase (`wavenet.excitation`)

a_k,t is linear between frame centres. Pair j spans the centres of frames j - 1 and j (the
ends held: frame -1 = frame 0, frame F = frame F - 1), w in [0, 1) the position within it:

    frames     |  j-1   |   j    |            voiced  voiced  a = (1 - w) A_j-1 + w A_j
    centres         *        *                voiced  silent  a = max(0, 1 - 2 w) A_j-1
    pair j          [========)                silent  voiced  a = max(0, 2 w - 1) A_j
                    w = 0 -> 1                silent  silent  a = 0

so a harmonic fades out (in) over the half pair next to an unvoiced frame instead of stopping
dead where the voicing switches: a step would spread its magnitude over every mel band. A
harmonic is left out of a pair where k f0 reaches Nyquist at either end (it would alias).

Each pair's two sums sum_k A_k sin(k phi) (its ends' amplitudes) are weighted by the two
ramps. With k = 16 m + j, sin(k phi) = sin(16 m phi) cos(j phi) + cos(16 m phi) sin(j phi),
so each sum is two small matrix products over j = 1..16, weighted by the seeds and summed
over m. e^{i j phi} comes by repeated doubling from e^{i phi}, the seeds e^{i 16 m phi} as
powers of e^{i 16 phi}: from the float64 phase rounded to float32 (2e-7 rad), harmonic k's
phase is within k 2e-7 rad (3e-5 at k = 128, an error 90 dB down). Pairs are grouped by how
many harmonics they need (K below f_max at their lowest F0 is ~8000 / F0), and unvoiced
pairs cost nothing.
"""

from __future__ import annotations

import math

import torch

from wavenet.caching import tensor_cache
from wavenet.excitation import frame_centre, frame_to_samples, sample_phase
from wavenet.features import FeatureSpec

__all__ = ["BLOCK", "harmonic_sum", "pair_ends", "pair_ramps"]

BLOCK = 16  # harmonics per seed e^{i 16 m phi}; pairs are grouped in steps of BLOCK harmonics
CHUNK = 1 << 22  # samples x BLOCK computed at once (16 MB in float32)
MERGE = 1 << 16  # harmonic-samples below which a group of pairs joins the next larger one


def pair_ends(values: torch.Tensor, voiced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair's two end values (..., frames + 1): a voiced end keeps its frame's value, an
    unvoiced end takes the other end's (so F0 is held across a voicing boundary).

    Args:
        values (Tensor): Per-frame values (B, frames) or (B, C, frames).
        voiced (Tensor): Voicing (B, frames), bool.
    """
    padded = torch.cat([values[..., :1], values, values[..., -1:]], -1)
    voicing = torch.cat([voiced[:, :1], voiced, voiced[:, -1:]], -1)
    if values.dim() == 3:
        voicing = voicing.unsqueeze(1)
    left = torch.where(voicing[..., :-1], padded[..., :-1], padded[..., 1:])
    right = torch.where(voicing[..., 1:], padded[..., 1:], padded[..., :-1])
    return left, right


@tensor_cache(8)
def _ramp_table(spec: FeatureSpec) -> torch.Tensor:
    """The ramps of the four kinds of pair (4, 2, hop), kind = 2 v_left + v_right."""
    hop, centre = spec.hop_length, frame_centre(spec)
    offset = torch.arange(hop, dtype=torch.float64) + math.ceil(centre) - centre
    w = (offset / hop).float()
    zero = torch.zeros_like(w)
    return torch.stack(
        [
            torch.stack([zero, zero]),  # silent, silent
            torch.stack([zero, (2 * w - 1).clamp(min=0)]),  # silent, voiced
            torch.stack([(1 - 2 * w).clamp(min=0), zero]),  # voiced, silent
            torch.stack([1 - w, w]),  # voiced, voiced
        ]
    )


def pair_ramps(voiced: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Weights of each pair's left and right amplitudes per sample (B, frames + 1, 2, hop),
    by the voicing of its ends (module docstring's table)."""
    left, right = pair_ends(voiced.long(), torch.ones_like(voiced))
    return _ramp_table(spec).to(voiced.device)[2 * left + right]


def _unit_powers(cos: torch.Tensor, sin: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """cos(n theta), sin(n theta) for n = 1..count (rows, count, hop) from those of theta
    (rows, hop), by doubling: e^{i (n + s) theta} = e^{i n theta} e^{i s theta}, n <= s."""
    c = cos.new_empty(cos.shape[0], count, cos.shape[1])
    s = torch.empty_like(c)
    c[:, 0], s[:, 0] = cos, sin
    size = 1
    while size < count:
        new = min(size, count - size)
        step_c, step_s = c[:, size - 1 : size], s[:, size - 1 : size]  # e^{i size theta}
        low_c, low_s = c[:, :new], s[:, :new]
        torch.mul(low_c, step_c, out=c[:, size : size + new]).addcmul_(low_s, step_s, value=-1)
        torch.mul(low_s, step_c, out=s[:, size : size + new]).addcmul_(low_c, step_s)
        size += new
    return c, s


def _pair_sums(phi: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """sum_k a_k sin(k phi) for each pair's two end amplitudes (module docstring): phi (rows,
    hop) in [0, 2 pi), ends (rows, 2, K), K a multiple of BLOCK -> (rows, 2, hop)."""
    rows, hop = phi.shape
    seeds = ends.shape[-1] // BLOCK
    angle = phi.float()
    block_c, block_s = _unit_powers(angle.cos(), angle.sin(), BLOCK)  # (rows, 16, hop)
    grouped = ends.reshape(rows, 2 * seeds, BLOCK)
    with_cos = torch.bmm(grouped, block_c).view(rows, 2, seeds, hop)
    with_sin = torch.bmm(grouped, block_s).view(rows, 2, seeds, hop)
    out = with_sin[:, :, 0]  # m = 0: sin(0) = 0, cos(0) = 1
    if seeds > 1:
        seed_c, seed_s = _unit_powers(block_c[:, -1], block_s[:, -1], seeds - 1)
        out = out + (with_cos[:, :, 1:] * seed_s.unsqueeze(1)).sum(2)
        out = out + (with_sin[:, :, 1:] * seed_c.unsqueeze(1)).sum(2)
    return out


def _needed(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Harmonics each pair needs (B * pairs,), rounded up to BLOCK: 1 + its highest non-zero."""
    nonzero = (left != 0) | (right != 0)  # (B, K, pairs)
    k = torch.arange(1, nonzero.shape[1] + 1, device=left.device).view(1, -1, 1)
    highest = (nonzero * k).amax(1).flatten()
    return (highest + BLOCK - 1) // BLOCK * BLOCK


def _groups(needed: torch.Tensor, hop: int) -> list[tuple[int, torch.Tensor]]:
    """(harmonics, rows) of each group of pairs summed together: the pairs needing the same
    count, a group merged into the next larger one where the harmonics it would add cost
    less than a group of its own (MERGE harmonic-samples)."""
    counts, sizes = needed.unique(return_counts=True)
    merged = {}
    counts, sizes = counts.tolist(), sizes.tolist()
    for index, count in enumerate(counts):
        larger = counts[index + 1] if index + 1 < len(counts) else None
        if count and larger is not None and sizes[index] * (larger - count) * hop < MERGE:
            sizes[index + 1] += sizes[index]
            merged[count] = larger
    groups: dict[int, list[int]] = {}
    for count in counts:
        if count:
            top = count
            while top in merged:
                top = merged[top]
            groups.setdefault(top, []).append(count)
    return [
        (top, torch.isin(needed, torch.tensor(members, device=needed.device)).nonzero()[:, 0])
        for top, members in groups.items()
    ]


def harmonic_sum(
    amplitudes: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor, spec: FeatureSpec
) -> torch.Tensor:
    """x_t = sum_k a_k,t sin(k phi_t) (module docstring).

    Args:
        amplitudes (Tensor): A (B, K, frames) per frame, >= 0.
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        phase (Tensor): phi_0 (B,), as for `wavenet.excitation.excitation`.
        spec (FeatureSpec): Framing and sample rate.

    Returns:
        Tensor: (B, frames * hop_length), float32.
    """
    batch, harmonics, frames = amplitudes.shape
    if harmonics == 0:  # no harmonic to sum (an all-unvoiced batch fits none)
        return amplitudes.new_zeros(batch, frames * spec.hop_length, dtype=torch.float32)
    hop, first = spec.hop_length, math.ceil(frame_centre(spec))
    f0_t, _ = frame_to_samples(f0, hop, frame_centre(spec))
    phi, _ = sample_phase(f0_t, spec.sample_rate, phase)
    phi = torch.nn.functional.pad(phi, (hop - first, first)).view(-1, hop)  # (B * pairs, hop)
    voiced = f0 > 0
    f0_left, f0_right = pair_ends(f0, voiced)
    padded = torch.nn.functional.pad(amplitudes.float(), (0, 0, 0, -harmonics % BLOCK))
    left, right = pair_ends(padded, voiced)
    k = torch.arange(1, padded.shape[1] + 1, device=f0.device).view(1, -1, 1)
    below = (k * torch.maximum(f0_left, f0_right).unsqueeze(1)) < spec.sample_rate / 2
    left, right = left * below, right * below
    ends = torch.stack([left, right], 1).permute(0, 3, 1, 2).flatten(0, 1)  # (B * pairs, 2, K)
    ramps = pair_ramps(voiced, spec).flatten(0, 1)  # (B * pairs, 2, hop)
    needed = _needed(left, right) * (ramps.flatten(1).amax(1) > 0)
    out = torch.zeros(phi.shape, device=amplitudes.device, dtype=left.dtype)
    for count, rows in _groups(needed, hop):
        for part in rows.split(max(1, CHUNK // (BLOCK * hop))):
            pairs = _pair_sums(phi[part], ends[part, :, :count])  # (rows, 2, hop)
            out.index_put_((part,), (pairs * ramps[part]).sum(1))
    return out.view(batch, -1)[:, hop - first : hop - first + frames * hop]
