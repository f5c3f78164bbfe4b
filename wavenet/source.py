"""A training-free harmonic-plus-noise source: (log-mel, F0) in, a waveform out.

    x_t = sum_k g_k A_k,t v_t sin(k phi_t)  +  n_t,   n = WOLA(STFT(white) * g S / E|N|)

- Harmonics: A_k per frame is the mel's harmonic fit at k f0 (`mel_envelope`), interpolated
  to sample rate between voiced frame centres; phi_t and v_t are the excitation's
  (`wavenet.excitation`), so source and excitation channels share their phase.
- Noise: white Gaussian noise whose STFT, on the mel's own frames and window, is scaled per
  bin to the expected magnitude S_j read off the mel (E|N_j| = sqrt(pi / 4 sum w^2) for a
  magnitude mel), then overlap-added with the same window (WOLA). Voiced frames, whose mel
  the harmonics already explain, get the smaller share `voiced_noise`.
- Analysis by synthesis: the fit assumes each frame stationary over the 64 ms window, but an
  F0 glide smears high harmonics over more bins (more magnitude per amplitude), and the
  window spreads a loud frame into its quiet neighbours. So the synthesis is analysed again
  with `FeatureSpec.extract` and both parts are corrected by the mel's ratio, r = mel /
  mel(x) per band (at most 10 per round), read at each harmonic and at each bin:

      A_k <- A_k (sum_m R[m, k f0] r_m / sum_m R[m, k f0])^(1/p),   S_j <- S_j r(j)^(1/p)

  the same multiplicative update as the fit, with the true forward map in place of R.
- A mel at the log floor gives A = 0 and S = 0: exact silence.

The gains g_k (per harmonic) and g (noise, voiced and unvoiced) are learnable, stored as logs
and initialised to 1, i.e. to the training-free synthesis, so a student can start its first
flow there (`companded_shift_scale`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from wavenet import mel_envelope as env
from wavenet import mulaw
from wavenet.excitation import frame_centre, frame_to_samples, interpolate_voiced, sample_phase
from wavenet.features import FeatureSpec

__all__ = [
    "HarmonicNoiseSource",
    "SourceConfig",
    "SourceOutput",
    "companded_shift_scale",
    "filtered_noise",
    "harmonic_sum",
    "noise_std",
    "training_free_parts",
    "white_noise",
]

MAX_RATIO = 10.0  # largest correction per analysis-by-synthesis round


class SourceConfig(BaseModel):
    """The harmonic-plus-noise source's settings. Saved with a model config that embeds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 128 harmonics reach 8 kHz from an F0 of 62.5 Hz; lower voices lose only their top band.
    harmonics: int = Field(128, ge=1, description="K: harmonics fitted to the mel and summed.")
    # scripts/measure_source.py: 10 and 30 score the same once the refinements follow.
    iterations: int = Field(10, ge=0, description="Multiplicative updates of the harmonic fit.")
    # scripts/measure_source.py: 0 -> 3 rounds lifts PESQ-WB by ~0.6; 6 adds little more.
    refinements: int = Field(3, ge=0, description="Analysis-by-synthesis correction rounds.")
    # Measured with scripts/measure_source.py: 0.1 scores above 0.03 and 0.3.
    voiced_noise: float = Field(0.1, ge=0, description="Noise share in voiced frames.")
    unvoiced_noise: float = Field(1.0, ge=0, description="Noise share in unvoiced frames.")


class SourceOutput(NamedTuple):
    """The source's parts, each (B, T): harmonic + noise = waveform (before clipping)."""

    harmonic: torch.Tensor
    noise: torch.Tensor
    noise_std: torch.Tensor  # the noise's standard deviation per sample

    @property
    def waveform(self) -> torch.Tensor:
        """The source in [-1, 1]."""
        return (self.harmonic + self.noise).clamp(-1.0, 1.0)

    @property
    def companded(self) -> torch.Tensor:
        """The source in the mu-law companded domain the student works in."""
        return mulaw.compress(self.waveform)


def harmonic_sum(
    amplitudes: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor, spec: FeatureSpec
) -> torch.Tensor:
    """x_t = sum_k A_k,t v_t sin(k phi_t), harmonics at or above Nyquist left out per sample.

    Args:
        amplitudes (Tensor): A (B, K, frames) per frame, interpolated between voiced centres.
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        phase (Tensor): phi_0 (B,), as for `wavenet.excitation.excitation`.
        spec (FeatureSpec): Framing and sample rate.

    Returns:
        Tensor: (B, frames * hop_length).
    """
    centre = frame_centre(spec)
    f0_t, _ = frame_to_samples(f0, spec.hop_length, centre)
    phi, _ = sample_phase(f0_t, spec.sample_rate, phase)
    unit = torch.ones_like(phi, dtype=amplitudes.dtype)
    step = torch.polar(unit, phi.to(amplitudes.dtype))  # e^{i phi}
    nyquist, highest = spec.sample_rate / 2, float(f0.max())
    out = torch.zeros_like(unit)
    # e^{i k phi} by rotating e^{i (k - 1) phi} by e^{i phi}, re-seeded from the float64
    # phase every 16 harmonics (float32 rounding stays near 1e-6); harmonics that are zero
    # in every frame are skipped, and blocks of 16 keep the (B, K, T) amplitudes small.
    for first in range(0, _last_nonzero_harmonic(amplitudes), 16):
        block = amplitudes[:, first : first + 16]
        amp_t, _ = interpolate_voiced(block, f0 > 0, spec.hop_length, centre)
        rotor = torch.polar(unit, torch.remainder((first + 1) * phi, 2 * math.pi).to(unit))
        for j in range(block.shape[1]):
            k, amp = first + 1 + j, amp_t[:, j]
            if k * highest >= nyquist:
                amp = amp * (k * f0_t < nyquist)
            out = out + amp * rotor.imag
            rotor = rotor * step
    return out


def _last_nonzero_harmonic(amplitudes: torch.Tensor) -> int:
    """1 + the highest k whose amplitude is non-zero in some item and frame (0 if none)."""
    nonzero = (amplitudes != 0).any(-1).any(0).nonzero()
    return int(nonzero.max()) + 1 if len(nonzero) else 0


def white_noise(
    batch: int, frames: int, spec: FeatureSpec, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Unit white Gaussian noise (B, frames * hop + n_fft - hop): `filtered_noise`'s input."""
    length = frames * spec.hop_length + spec.n_fft - spec.hop_length
    return torch.randn(batch, length, generator=generator)


def _noise_norm(spec: FeatureSpec) -> float:
    """(E|N_j|^p)^(1/p) of unit white noise's STFT bin: Rayleigh mean (p = 1), rms (p = 2)."""
    energy = float((env.stft_window(spec) ** 2).sum())
    return math.sqrt(math.pi / 4 * energy) if spec.power == 1 else math.sqrt(energy)


def filtered_noise(magnitude: torch.Tensor, white: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """`white` noise shaped so that its STFT on the mel's frames has expected |X| = magnitude.

    Frames and window are `FeatureSpec.extract`'s, so frame i is centred on hop block i; the
    scaled frames are windowed again and overlap-added, divided by the summed squared windows:

        white     |<- (n_fft - hop) // 2 ->| block 0 | block 1 | ... |<- rest ->|
        frame i   [i * hop, i * hop + n_fft)  -> rfft * H_i -> irfft * window -> add

    Args:
        magnitude (Tensor): Target |X_j| per bin and frame (B, n_fft // 2 + 1, frames).
        white (Tensor): From `white_noise` (B, frames * hop + n_fft - hop).

    Returns:
        Tensor: (B, frames * hop_length).
    """
    batch, _, frames = magnitude.shape
    hop, n_fft = spec.hop_length, spec.n_fft
    window = env.stft_window(spec).to(magnitude)
    frames_in = white.to(magnitude).unfold(-1, n_fft, hop) * window  # (B, frames, n_fft)
    spectrum = torch.fft.rfft(frames_in) * (magnitude.transpose(1, 2) / _noise_norm(spec))
    frames_out = torch.fft.irfft(spectrum, n=n_fft) * window
    fold = dict(output_size=(1, white.shape[-1]), kernel_size=(1, n_fft), stride=(1, hop))
    summed = nn.functional.fold(frames_out.transpose(1, 2), **fold).view(batch, -1)
    squares = (window**2).view(1, -1, 1).expand(1, n_fft, frames)
    overlap = nn.functional.fold(squares, **fold).view(1, -1)
    left = (n_fft - hop) // 2
    return (summed / overlap.clamp(min=1e-8))[:, left : left + frames * hop]


def noise_std(magnitude: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Per-frame std of `filtered_noise` (B, frames): sigma^2 = sum_j H_j^2 / n_fft over all
    n_fft bins, H = magnitude / E|N| (each interior rfft bin stands for two)."""
    gain = (magnitude / _noise_norm(spec)) ** 2
    full = 2 * gain.sum(1) - gain[:, 0] - gain[:, -1] * (1 - spec.n_fft % 2)
    return (full.clamp(min=0) / spec.n_fft).sqrt()


def training_free_parts(
    log_mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor,
    white: torch.Tensor,
    spec: FeatureSpec,
    config: SourceConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic amplitudes A (B, K, frames) and noise magnitudes S (B, bins, frames) whose
    synthesis has the mel `log_mel` (B, n_mels, frames): fit, then analysis by synthesis."""
    mel = env.linear_mel(log_mel, spec)
    # Only harmonics below f_max at the lowest F0 are fitted; the rest stay 0.
    lowest = f0[f0 > 0].min() if (f0 > 0).any() else None
    limit = min(spec.f_max, spec.sample_rate / 2)
    needed = 0 if lowest is None else min(config.harmonics, math.ceil(limit / float(lowest)))
    response = env.harmonic_response(f0, spec, needed)
    amplitudes = env.harmonic_amplitudes(mel, response, spec.power, config.iterations)
    share = torch.where(f0 > 0, config.voiced_noise, config.unvoiced_noise)
    magnitude = env.noise_envelope(mel, spec) * share.unsqueeze(1)
    tiny = 1e-12 * mel.amax(1, keepdim=True).clamp(min=1e-20)  # per frame: window-local
    for _ in range(config.refinements):
        made = harmonic_sum(amplitudes, f0, phase, spec) + filtered_noise(magnitude, white, spec)
        ratio = (mel / (env.linear_mel(spec.extract(made), spec) + tiny)).clamp(max=MAX_RATIO)
        amplitudes = amplitudes * env.bands_to_harmonics(ratio, response).pow(1 / spec.power)
        magnitude = magnitude * env.bands_to_bins(ratio, spec).clamp(min=0).pow(1 / spec.power)
    return nn.functional.pad(amplitudes, (0, 0, 0, config.harmonics - needed)), magnitude


def companded_shift_scale(
    output: SourceOutput, floor: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """A first flow's (mu, s) from the source, in the companded domain: x1 = z s + mu.

        mu = compress(harmonic),  s = compress'(harmonic) sigma_noise sqrt(3) / pi  (>= floor)

    compress' = mu_law / ((1 + mu_law |x|) ln(1 + mu_law)) carries the noise's std through the
    companding, and sqrt(3) / pi turns a std into the scale of a Logistic(0, 1) sample z.
    """
    harmonic = output.harmonic.clamp(-1.0, 1.0)
    slope = mulaw.MU / ((1 + mulaw.MU * harmonic.abs()) * math.log1p(mulaw.MU))
    scale = slope * output.noise_std * math.sqrt(3) / math.pi
    return mulaw.compress(harmonic), scale.clamp(min=floor)


class HarmonicNoiseSource(nn.Module):
    """The harmonic-plus-noise source with learnable gains (module docstring).

    Args:
        spec (FeatureSpec): The mel's features.
        config (SourceConfig | None): Harmonics, fit and noise shares; None = defaults.
    """

    def __init__(self, spec: FeatureSpec, config: SourceConfig | None = None):
        super().__init__()
        self.spec, self.config = spec, config or SourceConfig()
        self.log_harmonic_gain = nn.Parameter(torch.zeros(self.config.harmonics))
        self.log_noise_gain = nn.Parameter(torch.zeros(2))  # [unvoiced, voiced]

    def forward(
        self,
        log_mel: torch.Tensor,
        f0: torch.Tensor,
        phase: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> SourceOutput:
        """The source of a batch; deterministic given `phase` and the generator's state.

        Args:
            log_mel (Tensor): Natural-log mel (B, n_mels, frames), as `FeatureSpec.extract`.
            f0 (Tensor): F0 per frame (B, frames), Hz, 0 = unvoiced.
            phase (Tensor): phi_0 (B,), the excitation's initial phase.
            generator (torch.Generator | None): The noise's generator.

        Returns:
            SourceOutput: harmonic, noise and noise_std, each (B, frames * hop_length).
        """
        if f0.dim() != 2 or log_mel.shape[0] != f0.shape[0] or log_mel.shape[-1] != f0.shape[-1]:
            raise ValueError(f"f0 {tuple(f0.shape)} does not match the mel {tuple(log_mel.shape)}")
        batch, frames = f0.shape
        white = white_noise(batch, frames, self.spec, generator).to(log_mel.device)
        f0 = f0.float()
        # The training-free parts have nothing to learn: only the gains carry gradients.
        with torch.no_grad():
            amplitudes, magnitude = training_free_parts(
                log_mel.float(), f0, phase, white, self.spec, self.config
            )
        harmonic_gain = self.log_harmonic_gain.exp().view(1, -1, 1)
        harmonic = harmonic_sum(amplitudes * harmonic_gain, f0, phase, self.spec)
        magnitude = magnitude * self.log_noise_gain.exp()[(f0 > 0).long()].unsqueeze(1)
        noise = filtered_noise(magnitude, white, self.spec)
        every = torch.ones_like(f0, dtype=torch.bool)
        std, _ = interpolate_voiced(noise_std(magnitude, self.spec), every, self.spec.hop_length)
        return SourceOutput(harmonic, noise, std)
