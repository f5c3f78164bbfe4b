"""The harmonic-plus-noise source as a student's first affine step, over any window of frames.

    x^(0) = z s_src + mu_src,   mu_src = compress(harmonic + noise),   s_src = SOURCE_SCALE

(`wavenet.source`). The source's noise is conditioning, like the excitation's phase: it is
the mel-shaped noise of the training-free synthesis, made from a fixed white-noise table
indexed by sample position, so mu_src depends on the mel, F0 and the phase only, never on z,
and the log-determinant stays sum_t log s_tot,t. z gets a scale well inside one mu-law bin,
so an untrained student (its flows start as the identity) is the training-free synthesis.

Why not carry the noise by z: a logistic in the companded domain expands into spiky noise
whose tails run to full scale wherever the noise is loud (fricatives), far from the
Gaussian-like noise the source measures; the flows after the source can still learn to
add z-driven noise where the losses ask for it.

The source is not frame-local: each analysis-by-synthesis round reads the synthesis back
through the mel's STFT window, so a frame's result depends on frames up to `source_context`
away. Frames [start, stop) are therefore computed on a window R = source_context frames wider
on each side and cut out, which equals the whole utterance's source on those samples (to
float rounding), at a cost proportional to the chunk:

    frames      | start-R  ...  | start  .......  stop | ...  stop+R |
    computed    [======================================================)
    kept                        [=====================)

The white noise is a fixed table indexed by sample position (period about 65 s), so the
source is a deterministic function of (mel, F0, phi_0), the same in a window as in the whole.
"""

from __future__ import annotations

import functools
import math

import torch

from wavenet import mulaw
from wavenet.excitation import (
    TWO_PI,
    frame_centre,
    frame_to_samples,
    interpolate_voiced,
    sample_phase,
)
from wavenet.features import FeatureSpec
from wavenet.source import (
    HarmonicNoiseSource,
    SourceConfig,
    SourceOutput,
    context_frames,
    filtered_noise,
    harmonic_sum,
    noise_std,
    training_free_parts,
)

__all__ = [
    "SOURCE_SCALE",
    "WHITE_PERIOD",
    "source_context",
    "source_outputs",
    "source_shift_scale",
]

WHITE_PERIOD = 1 << 20  # samples of the white-noise table (65 s at 16 kHz), then repeated
WHITE_SEED = 0
SOURCE_SCALE = 1e-3  # z's scale in the source step: an eighth of a mu-law bin (2 / 255)
# Log-mels of audio in [-1, 1] stay below ~3 (a full-scale sine: 2.3); a sent mel far above
# that would overflow exp() in the source's fit (float32 beyond ~88) and make NaN audio.
MEL_CEILING = 20.0


@functools.lru_cache(maxsize=1)
def _white_table() -> torch.Tensor:
    return torch.randn(WHITE_PERIOD, generator=torch.Generator().manual_seed(WHITE_SEED))


def source_white(batch: int, start: int, stop: int, spec: FeatureSpec, device) -> torch.Tensor:
    """The refinement noise of frames [start, stop), as `wavenet.source.white_noise` shapes it
    ((B, frames * hop + n_fft - hop), sample u of the padded frames at table position
    (start * hop + u) mod WHITE_PERIOD), the same row for every item."""
    length = (stop - start) * spec.hop_length + spec.n_fft - spec.hop_length
    first = start * spec.hop_length
    index = torch.arange(first, first + length) % WHITE_PERIOD
    return _white_table()[index].to(device).expand(batch, -1)


def source_context(spec: FeatureSpec, config: SourceConfig) -> int:
    """R: frames each side of a frame that its source step depends on: the training-free
    parts' reach (`wavenet.source.context_frames`), plus the final noise's WOLA reach
    r = ceil(max(L, n_fft - L - hop) / hop), L = (n_fft - hop) // 2: output block i sums
    the windowed noise frames i - r .. i + r."""
    left = (spec.n_fft - spec.hop_length) // 2
    reach = math.ceil(max(left, spec.n_fft - left - spec.hop_length) / spec.hop_length)
    return context_frames(spec, config) + reach


def _window_phase(
    f0: torch.Tensor, spec: FeatureSpec, phase: torch.Tensor, samples: int
) -> torch.Tensor:
    """phi_0 of a window whose sample `samples` must start at `phase` (B,):

        phi_0 = phase - 2 pi sum_{u < samples} f0_u / sr   (the window's own F0 track)

    so that from there on the window's phase equals the whole utterance's."""
    f0_t, _ = frame_to_samples(f0, spec.hop_length, frame_centre(spec))
    zero = torch.zeros(phase.shape, dtype=torch.float64, device=phase.device)
    _, advance = sample_phase(f0_t[:, :samples], spec.sample_rate, zero)
    return torch.remainder(phase.double() - advance, TWO_PI)


def source_outputs(
    source: HarmonicNoiseSource,
    mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor,
    start_frame: int = 0,
) -> SourceOutput:
    """The source of frames whose white noise starts at table frame `start_frame`: harmonic,
    noise and noise_std, each (B, frames * hop), with the gains' gradients. The tail of
    `HarmonicNoiseSource.forward`, with the position-indexed noise in place of a drawn one."""
    spec = source.spec
    batch, frames = f0.shape
    white = source_white(batch, start_frame, start_frame + frames, spec, mel.device)
    f0 = f0.float()
    with torch.no_grad(), torch.autocast(mel.device.type, enabled=False):
        amplitudes, magnitude = training_free_parts(
            mel.float().clamp(max=MEL_CEILING), f0, phase, white, spec, source.config
        )
    gains = source.log_harmonic_gain.exp().view(1, -1, 1)
    harmonic = harmonic_sum(amplitudes * gains, f0, phase, spec)
    magnitude = magnitude * source.log_noise_gain.exp()[(f0 > 0).long()].unsqueeze(1)
    every = torch.ones_like(f0, dtype=torch.bool)
    std, _ = interpolate_voiced(noise_std(magnitude, spec), every, spec.hop_length)
    return SourceOutput(harmonic, filtered_noise(magnitude, white, spec), std)


def _window(
    source: HarmonicNoiseSource,
    mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor,
    start: int,
    stop: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_src, log s_src) of frames [start, stop) of a batch, `phase` before frame `start`."""
    spec = source.spec
    hop, context = spec.hop_length, source_context(spec, source.config)
    first, last = max(start - context, 0), min(stop + context, f0.shape[-1])
    window_phase = _window_phase(f0[:, first:last], spec, phase, (start - first) * hop)
    outputs = source_outputs(source, mel[..., first:last], f0[:, first:last], window_phase, first)
    keep = slice((start - first) * hop, (stop - first) * hop)
    mu = mulaw.compress(outputs.waveform[:, keep])
    return mu, torch.full_like(mu, math.log(SOURCE_SCALE))


def source_shift_scale(
    source: HarmonicNoiseSource,
    mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor | None,
    start: int = 0,
    stop: int | None = None,
    mel_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first affine step's (mu_src, log s_src) for frames [start, stop).

    Args:
        source (HarmonicNoiseSource): The student's source (its gains).
        mel (Tensor): Log-mel (B, n_mels, frames), the whole utterance.
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        phase (Tensor | None): The excitation's phase before frame `start` (B,); None = 0.
        start (int): First frame wanted.
        stop (int | None): End frame (exclusive); None = all frames.
        mel_lengths (Tensor | None): Real frames per item of a zero-padded batch (B,): each
            item's source is then computed on its own frames, as if it were alone (past its
            end: mu 0 and SOURCE_SCALE).

    Returns:
        tuple: mu_src and log s_src, each (B, (stop - start) * hop), float32.
    """
    stop = f0.shape[-1] if stop is None else stop
    if phase is None:
        phase = torch.zeros(f0.shape[0], dtype=torch.float64, device=f0.device)
    if mel_lengths is None:
        return _window(source, mel, f0, phase, start, stop)
    hop = source.spec.hop_length
    mu = torch.zeros(f0.shape[0], (stop - start) * hop, device=mel.device)
    log_s = torch.full_like(mu, math.log(SOURCE_SCALE))
    for item, length in enumerate(mel_lengths.tolist()):
        end = min(stop, length)
        if end > start:
            rows = slice(item, item + 1)
            item_mu, item_log_s = _window(
                source, mel[rows, :, :length], f0[rows, :length], phase[rows], start, end
            )
            mu[item, : (end - start) * hop] = item_mu[0]
            log_s[item, : (end - start) * hop] = item_log_s[0]
    return mu, log_s
