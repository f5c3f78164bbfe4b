"""A training-free harmonic-plus-noise source: (log-mel, F0) in, a waveform out.

    x_t = sum_k g_k A_k,t sin(k phi_t)  +  n_t,   n = WOLA(STFT(white) * g S / E|N|)

- Harmonics (`harmonic_synthesis`): A_k per frame is fitted to the mel at k f0, F0 gliding
  within the window (`harmonic_response`), linear between frame centres and fading over the
  half frame next to an unvoiced one; phi_t is the excitation's phase (`wavenet.excitation`),
  so source and excitation channels share their phase.
- Noise (`noise_synthesis`): white noise shaped per STFT bin to the magnitude S_j read off the
  mel at the bands' centroids c_m and interpolated between them (`mel_envelope`). Voiced
  frames, whose mel the harmonics already explain, get the smaller share `voiced_noise`.
- Refinement: both parts are corrected by the mel's ratio r = mel / mel(x) per band (at most
  10 per round), read at each harmonic through its response and at each band's centroid:

      A_k <- A_k (sum_m R[m, k] r_m / sum_m R[m, k])^(1/p),   S^p(c_m) <- S^p(c_m) r_m

  the fit's multiplicative update with a truer forward map. `refinements` rounds take mel(x)
  from the frame-rate prediction (`mel_prediction`: level changes within the window, noise
  crossfades), then `resynthesis` rounds from the synthesis itself, through
  `FeatureSpec.extract` (what the prediction leaves out: the interplay of harmonics and
  noise, fades, glides beyond a linear chirp).
- A mel at the log floor gives A = 0 and S = 0: exact silence.
- The noise gate (`gate_iterations` > 0, `wavenet.noise_gate`): the noise is multiplied per
  hop block by G = min(1, sqrt(ratio b / p)), b the block's energy deconvolved from the
  frames' (a silent frame's mel reads a neighbouring onset through the window), p the
  noise's; it keeps the noise out of the silence beside speech. Applied after the rounds.
- A shifted item (its F0 moved away from the pitch its mel was recorded at, the mel replaced
  by its envelope, `wavenet.synthesis_f0`): its voiced frames' noise is only ever lowered
  by the rounds (r clamped at 1). The envelope claims energy between the shifted harmonics
  that no harmonic explains; raising the noise there would fill the gaps with bands at the
  old pitch's harmonics, and a listener (and a pitch tracker) would hear the old pitch.

Without resynthesis rounds A and S are a function of the mel and F0 alone; with them, also
of the phase and the noise. Either way a streamer computes them once for the utterance and
synthesises each chunk from them with one frame of context (`harmonic_sum`); a frame's A and
S depend on `context_frames` frames on each side.

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
from wavenet.analysis_window import NOISE_REACH, pair_tables
from wavenet.excitation import interpolate_voiced
from wavenet.features import FeatureSpec
from wavenet.harmonic_response import harmonic_amplitudes, harmonic_response
from wavenet.harmonic_synthesis import harmonic_sum
from wavenet.mel_prediction import predicted_mel
from wavenet.noise_gate import apply_gate, gate_reach, noise_gate
from wavenet.noise_synthesis import filtered_noise, noise_std, white_noise

__all__ = [
    "HarmonicNoiseSource",
    "SourceConfig",
    "SourceOutput",
    "companded_shift_scale",
    "context_frames",
    "filtered_noise",
    "harmonic_sum",
    "noise_output",
    "noise_std",
    "source_gate",
    "training_free_parts",
    "white_noise",
]

MAX_RATIO = 10.0  # largest correction per refinement round


class SourceConfig(BaseModel):
    """The harmonic-plus-noise source's settings. Saved with a model config that embeds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 128 harmonics reach 8 kHz from an F0 of 62.5 Hz; lower voices lose only their top band.
    harmonics: int = Field(128, ge=1, description="K: harmonics fitted to the mel and summed.")
    # scripts/measure_source.py: 1, 2 and 10 score alike once the refinements follow.
    iterations: int = Field(2, ge=0, description="Multiplicative updates of the harmonic fit.")
    # scripts/measure_source.py: 1 round scores 0.05-0.07 PESQ-WB below 2; 3 and 4 as 2.
    refinements: int = Field(2, ge=0, description="Correction rounds on the predicted mel.")
    # scripts/measure_source.py: 1 round adds 0.02-0.06 PESQ-WB and ~60 % to the cost (it
    # synthesises and analyses the audio), and makes A and S depend on the phase and noise.
    resynthesis: int = Field(0, ge=0, description="Correction rounds on the synthesis' mel.")
    # Measured with scripts/measure_source.py: 0.1 scores above 0.03 and 0.3.
    voiced_noise: float = Field(0.1, ge=0, description="Noise share in voiced frames.")
    unvoiced_noise: float = Field(1.0, ge=0, description="Noise share in unvoiced frames.")
    # wavenet/noise_gate.py; scripts/measure_source.py (24 clips a split): 5 steps and ratio 4
    # took the seen speakers' noise floor from +6.8 to +2.1 dB, PESQ-WB 2.671 -> 2.693.
    gate_iterations: int = Field(
        0, ge=0, description="Deconvolution steps of the noise gate; 0 = no gate."
    )
    gate_ratio: float = Field(
        4.0, gt=0, description="Noise energy the gate lets through, times the block's."
    )


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


def context_frames(spec: FeatureSpec, config: SourceConfig) -> int:
    """R: frames each side of a frame that its source depends on, so that frames computed on
    a window R frames wider on each side equal the whole utterance's.

    A frame's response reads F0 over the pairs its window covers (reach r_w, 2 by default),
    and so does each predicted round, further reading the noise NOISE_REACH frames away. A
    resynthesis round reads hop blocks i - r .. i + r, r = ceil(max(L, n_fft - L - hop) /
    hop), L = (n_fft - hop) // 2, and so does the WOLA noise: r + max(r, 1). The final
    synthesis interpolates between neighbouring frames: 1.
    """
    first, linear, _ = pair_tables(spec)
    window = max(1 - first, first + len(linear) - 1)  # pairs i + d end at frames i + d - 1, i + d
    left = (spec.n_fft - spec.hop_length) // 2
    reach = math.ceil(max(left, spec.n_fft - left - spec.hop_length) / spec.hop_length)
    predicted = config.refinements * max(window, NOISE_REACH)
    gate = gate_reach(config.gate_iterations) if config.gate_iterations else 0
    return window + predicted + config.resynthesis * (reach + max(reach, 1)) + gate + 1


def _harmonics_needed(f0: torch.Tensor, spec: FeatureSpec, config: SourceConfig) -> int:
    """Harmonics below f_max at the lowest F0 (at most config.harmonics); 0 if all unvoiced."""
    voiced = f0[f0 > 0]
    if not len(voiced):
        return 0
    limit = min(spec.f_max, spec.sample_rate / 2)
    return min(config.harmonics, math.ceil(limit / float(voiced.min())))


def training_free_parts(
    log_mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor | None,
    white: torch.Tensor | None,
    spec: FeatureSpec,
    config: SourceConfig,
    shifted: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic amplitudes A (B, K, frames) and noise magnitudes S (B, bins, frames) whose
    synthesis has the mel `log_mel` (B, n_mels, frames): fit, then refinement (module
    docstring). `phase` (B,) and `white` (`white_noise`) are the resynthesis rounds' own,
    unused (and may be None) without them. `shifted` (B,) bool: the items whose F0 is
    shifted (their voiced noise is never raised); None = none."""
    if config.resynthesis and (phase is None or white is None):
        raise ValueError("resynthesis rounds need the phase and the white noise")
    mel = env.linear_mel(log_mel, spec)
    needed = _harmonics_needed(f0, spec, config)
    response = harmonic_response(f0, spec, needed)
    amplitudes = harmonic_amplitudes(mel, response, spec.power, config.iterations)
    share = torch.where(f0 > 0, config.voiced_noise, config.unvoiced_noise)
    level = env.noise_level(mel, spec) * share.unsqueeze(1)  # S^p at the band centroids
    tiny = 1e-12 * mel.amax(1, keepdim=True).clamp(min=1e-20)  # per frame: window-local
    held = (f0 > 0).unsqueeze(1)  # (B, 1, frames): where a shifted item's noise is held down
    if shifted is None:
        held = torch.zeros_like(held)
    else:
        held = held & shifted.view(-1, 1, 1).to(held.device)
    for round_ in range(config.refinements + config.resynthesis):
        if round_ < config.refinements:
            made = predicted_mel(amplitudes, level, f0, response, spec)
        else:
            audio = harmonic_sum(amplitudes, f0, phase, spec)
            noise = filtered_noise(env.noise_envelope(mel, spec, level), white, spec)
            made = env.linear_mel(spec.extract(audio + noise), spec)
        ratio = (mel / (made + tiny)).clamp(max=MAX_RATIO)
        amplitudes = amplitudes * response.from_bands(ratio).pow(1 / spec.power)
        level = level * torch.where(held, ratio.clamp(max=1.0), ratio)
    amplitudes = nn.functional.pad(amplitudes, (0, 0, 0, config.harmonics - needed))
    return amplitudes, env.noise_envelope(mel, spec, level)


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
            gate = source_gate(log_mel.float(), magnitude, self.spec, self.config)
        harmonic_gain = self.log_harmonic_gain.exp().view(1, -1, 1)
        harmonic = harmonic_sum(amplitudes * harmonic_gain, f0, phase, self.spec)
        magnitude = magnitude * self.log_noise_gain.exp()[(f0 > 0).long()].unsqueeze(1)
        return noise_output(harmonic, magnitude, gate, white, self.spec)


def source_gate(
    log_mel: torch.Tensor, magnitude: torch.Tensor, spec: FeatureSpec, config: SourceConfig
) -> torch.Tensor:
    """The noise gate G (B, 1, frames) of `wavenet.noise_gate`, ones without one."""
    if not config.gate_iterations:
        return magnitude.new_ones(magnitude.shape[0], 1, magnitude.shape[-1])
    return noise_gate(log_mel, magnitude, spec, config.gate_iterations, config.gate_ratio)


def noise_output(
    harmonic: torch.Tensor,
    magnitude: torch.Tensor,
    gate: torch.Tensor,
    white: torch.Tensor,
    spec: FeatureSpec,
) -> SourceOutput:
    """The source's parts from its harmonics and its noise's magnitudes, gate and white noise."""
    noise = apply_gate(filtered_noise(magnitude, white, spec), gate, spec)
    every = torch.ones(magnitude.shape[0], magnitude.shape[-1], dtype=torch.bool)
    std, _ = interpolate_voiced(
        noise_std(magnitude, spec), every.to(magnitude.device), spec.hop_length
    )
    return SourceOutput(harmonic, noise, apply_gate(std, gate, spec))
