"""The mel of each harmonic in each frame, its F0 gliding within the window, and the fit of
harmonic amplitudes to a mel.

A harmonic of amplitude A at a steady frequency f has the mel A^p R_0[:, f] (the table of
`mel_envelope.sinusoid_response_table`). In speech F0 glides, and harmonic k sweeps k beta
FFT bins within the window (`analysis_window.window_f0`): its magnitude spreads over the sweep
and, for p = 1, grows (spread over more bins, the same energy has a larger magnitude sum):

    R[:, k] = G_p(k beta) * mean of R_0 over [k f_bar - b / 2, k f_bar + b / 2]

with b = min(k beta, 2 f_bar) (past two spacings, neighbours of about the same amplitude
overlap and the sum's spectrum is smooth anyway), halved where the box would span more than
WIDTH bands.

G_p(beta) = sum_j |X_j|^p / sum_j |X_0,j|^p of a linear chirp of sweep beta under the window
(tabulated). Once the sweep passes the harmonic spacing s = f_bar in bins, neighbouring
harmonics overlap at random phases and the sum behaves as noise of the same energy E spread
over s bins, which caps the gain: G_p <= s^(1 - p / 2) Gamma(1 + p / 2) E^(p / 2) /
sum_j |X_0,j|^p (`chirp_gain`). For p = 2 both are 1 (Parseval).

Each R[:, k] is non-zero in a few neighbouring bands only, so it is stored as a band
(`BandedResponse`: first band and values). Amplitudes a_k = A_k^p are fitted to a linear mel
by multiplicative updates (Richardson-Lucy, the nonnegative least-KL fit):

    a_k <- a_k * sum_m R[m, k] (mel[m] / sum_k' a_k' R[m, k']) / sum_m R[m, k]

Started from a flat a, harmonics inside one wide mel band keep equal shares, and the narrow
low bands, which resolve single harmonics, set each harmonic's own amplitude.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from wavenet import mel_envelope as env
from wavenet.analysis_window import window_f0
from wavenet.caching import tensor_cache
from wavenet.features import FeatureSpec

__all__ = ["BandedResponse", "chirp_gain", "harmonic_amplitudes", "harmonic_response"]

FLOOR = 1e-3  # bands below this share of a row's peak response are left out of its band
SWEEP_STEP = 0.05  # the chirp table's step in sqrt(sweep in bins)
MAX_SWEEP = 256.0  # sweeps beyond (bins) are capped by the spacing anyway
MAX_SPREAD = 2.0  # harmonic spacings a response's box spans at most (module docstring)
WIDTH = 12  # bands stored per response: a wider sweep's box is halved (SHRINK times) to fit
SHRINK = 3


class BandedResponse(NamedTuple):
    """R (B, frames, K, n_mels) as its entries (harmonic k of frame i, below f_max, with a
    voiced sample in the window), each a band: R[b, i, k, first + j] = values[e, j]."""

    entries: torch.Tensor  # (N,): (b K + k) frames + i, the entry's place in (B, K, frames)
    index: torch.Tensor  # (N, width): (b frames + i) (n_mels + width) + first + j
    values: torch.Tensor  # (N, width); bands past n_mels hold zeros
    shape: tuple[int, int, int, int]  # B, K, frames, n_mels

    def to_bands(self, amplitudes: torch.Tensor) -> torch.Tensor:
        """sum_k a_k R[m, k] per band: a (B, K, frames) -> (B, n_mels, frames)."""
        batch, _, frames, n_mels = self.shape
        width = self.values.shape[-1]
        terms = self.values * amplitudes.reshape(-1)[self.entries].unsqueeze(-1)
        out = self.values.new_zeros(batch * frames * (n_mels + width))
        out.index_add_(0, self.index.flatten(), terms.flatten())
        return out.view(batch, frames, n_mels + width)[..., :n_mels].transpose(1, 2)

    def from_bands(self, values: torch.Tensor) -> torch.Tensor:
        """sum_m R[m, k] x_m / sum_m R[m, k] per harmonic: x (B, n_mels, frames) -> (B, K,
        frames); 0 where R[:, k] is."""
        padded = torch.nn.functional.pad(values.transpose(1, 2), (0, self.values.shape[-1]))
        picked = padded.reshape(-1)[self.index]
        weighted = (picked * self.values).sum(-1) / self.values.sum(-1).clamp(min=1e-20)
        return self._place(weighted)

    def valid(self) -> torch.Tensor:
        """1 where R[:, k] has an entry, else 0 (B, K, frames)."""
        return self._place(self.values.new_ones(len(self.entries)))

    def _place(self, per_entry: torch.Tensor) -> torch.Tensor:
        batch, harmonics, frames, _ = self.shape
        out = per_entry.new_zeros(batch * harmonics * frames)
        return out.index_put((self.entries,), per_entry).view(batch, harmonics, frames)


@tensor_cache(8)
def _tables(spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The running sum of R_0's rows (grid + 1, n_mels + WIDTH: the bands past n_mels 0),
    and each row's first and last band above FLOOR of its peak (grid,)."""
    table = env.sinusoid_response_table(spec).double()
    running = torch.nn.functional.pad(table.cumsum(0), (0, WIDTH, 1, 0)).float()
    above = table > FLOOR * table.amax(1, keepdim=True).clamp(min=1e-30)
    first = above.double().argmax(1)
    last = table.shape[1] - 1 - above.flip(1).double().argmax(1)
    return running, first, last


@tensor_cache(8)
def _chirp_table(spec: FeatureSpec) -> tuple[torch.Tensor, float]:
    """G_p at sqrt(sweep) = 0, SWEEP_STEP, ... sqrt(MAX_SWEEP), and the spacing cap's factor
    Gamma(1 + p / 2) E^(p / 2) / sum_j |X_0,j|^p (module docstring)."""
    n_fft, power = spec.n_fft, spec.power
    roots = torch.arange(0, math.sqrt(MAX_SWEEP) + SWEEP_STEP, SWEEP_STEP, dtype=torch.float64)
    time = (torch.arange(n_fft, dtype=torch.float64) - n_fft / 2) / n_fft
    sums, stationary = 0.0, None
    for offset in (0.0, 0.25, 0.5):  # sub-bin positions of the centre
        centre = n_fft / 4 + offset
        phase = 2 * math.pi * (centre * time + roots.unsqueeze(1) ** 2 * time**2 / 2)
        spectra = torch.fft.rfft(env.stft_window(spec) * phase.cos()).abs()
        sums = sums + (spectra**power).sum(-1)
        if offset == 0.0:
            stationary = spectra[0]
    gains = (sums / sums[0]).float()
    energy = float((stationary**2).sum())
    cap = math.gamma(1 + power / 2) * energy ** (power / 2) / float((stationary**power).sum())
    return gains, cap


def chirp_gain(sweep: torch.Tensor, spacing: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """G_p(sweep) capped by cap(spacing), each in FFT bins (module docstring): the gain's
    excess over 1 and the cap's pass through the smooth minimum (x^-4 + y^-4)^(-1/4) =
    min(x, y) (1 + (min / max)^4)^(-1/4), as the overlap sets in gradually; a steady harmonic
    keeps G = 1.

    Args:
        sweep (Tensor): Each harmonic's sweep (...).
        spacing (Tensor): The harmonic spacing, broadcastable to sweep.
    """
    gains, cap = _chirp_table(spec)
    gains = gains.to(sweep.device)
    position = (sweep.clamp(0, MAX_SWEEP).sqrt() / SWEEP_STEP).clamp(max=len(gains) - 1.001)
    below = position.floor().long()
    weight = position - below
    excess = (gains[below] * (1 - weight) + gains[below + 1] * weight - 1).clamp(min=1e-12)
    room = (spacing.clamp(min=1e-6) ** (1 - spec.power / 2) * cap - 1).clamp(min=1e-12)
    small, large = torch.minimum(excess, room), torch.maximum(excess, room)
    ratio = (small / large).square().square()
    return 1 + small / (1 + ratio).sqrt().sqrt()


def _box(position, half, first_band, last_band) -> tuple[torch.Tensor, ...]:
    """Grid rows low..high of a box (position +- half, in grid rows), its first band and the
    span of bands to its last."""
    grid = len(first_band)
    low = (position - half).round().long().clamp(0, grid - 1)
    high = (position + half).round().long().clamp(0, grid - 1)
    return low, high, first_band[low], last_band[high] - first_band[low]


def harmonic_response(f0: torch.Tensor, spec: FeatureSpec, harmonics: int) -> BandedResponse:
    """R[:, k] of harmonics k = 1..K in each frame (module docstring).

    Zero in frames with no voiced sample in their window and for harmonics at or above f_max
    (or Nyquist): the mel says nothing about them.

    Args:
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        harmonics (int): K.
    """
    running, first_band, last_band = (t.to(f0.device) for t in _tables(spec))
    columns = running.shape[1]
    batch, frames = f0.shape
    f_bar, sweep = window_f0(f0.float(), spec)
    k = torch.arange(1, harmonics + 1, dtype=torch.float32, device=f0.device).view(1, -1, 1)
    limit = min(spec.f_max, spec.sample_rate / 2)
    item, harmonic, frame = ((f_bar.unsqueeze(1) > 0) & (k * f_bar.unsqueeze(1) < limit)).nonzero(
        as_tuple=True
    )
    order = harmonic.float() + 1
    centre = order * f_bar[item, frame]  # (N,) Hz
    sweeps = order * sweep[item, frame]  # bins
    per_bin = env.OVERSAMPLE
    position = centre * (spec.n_fft * per_bin / spec.sample_rate)
    spacing = f_bar[item, frame] * (spec.n_fft / spec.sample_rate)  # bins
    half = torch.minimum(sweeps, MAX_SPREAD * spacing) * (per_bin / 2)
    low, high, first, span = _box(position, half, first_band, last_band)
    for _ in range(SHRINK):  # halve the few boxes whose bands exceed WIDTH
        wide = (span >= WIDTH).nonzero(as_tuple=True)
        if not len(wide[0]):
            break
        half[wide] = half[wide] / 2
        low[wide], high[wide], first[wide], span[wide] = _box(
            position[wide], half[wide], first_band, last_band
        )
    # The mean of rows low..high over bands first..first + WIDTH - 1: each a contiguous run
    # of the flattened running sum. Past the last band a value is 0 (of the box's own bands
    # only, so an entry reads the same in any batch).
    runs = running.flatten().as_strided((running.numel() - WIDTH + 1, WIDTH), (1, 1))
    upper, lower = runs[(high + 1) * columns + first], runs[low * columns + first]
    bands = torch.arange(WIDTH, device=f0.device)
    inside = bands <= span.unsqueeze(-1)
    scale = chirp_gain(sweeps, spacing, spec) / (high + 1 - low)
    values = torch.where(inside, upper.sub_(lower).clamp_(min=0), 0.0).mul_(scale.unsqueeze(-1))
    index = ((item * frames + frame) * columns + first).unsqueeze(-1) + bands
    entries = (item * harmonics + harmonic) * frames + frame
    return BandedResponse(entries, index, values, (batch, harmonics, frames, columns - WIDTH))


def harmonic_amplitudes(
    mel: torch.Tensor, response: BandedResponse, power: float, iterations: int = 10
) -> torch.Tensor:
    """Amplitudes A_k of harmonics k = 1..K per frame, fitted to a linear mel (module docstring).

    Args:
        mel (Tensor): Linear mel (B, n_mels, frames), from `mel_envelope.linear_mel`.
        response (BandedResponse): The harmonics' responses, `harmonic_response`.
        power (float): The mel's exponent p (spec.power): the fit is linear in a_k = A_k^p.
        iterations (int): Multiplicative updates; 0 returns the flat start (ones where valid).

    Returns:
        Tensor: A (B, K, frames) >= 0, waveform amplitudes; 0 where the response is.
    """
    tiny = 1e-12 * mel.amax(1, keepdim=True).clamp(min=1e-20)
    share = response.valid().to(mel.dtype)
    for _ in range(iterations):
        share = share * response.from_bands(mel / (response.to_bands(share) + tiny))
    return share.pow(1 / power)
