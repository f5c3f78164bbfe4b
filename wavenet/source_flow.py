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

The source comes in two steps (`SourceSteps`): frame-rate parameters (harmonic amplitudes
and noise magnitudes, gains applied), then their synthesis at sample rate. The parameters
are a function of the mel, F0 and the initial phase phi_0 (resynthesis rounds also read the
phase and the position-indexed white noise, both fixed by phi_0): they are computed once for
the utterance (a few hundred values per frame; in pieces of PIECE_FRAMES, each with the
context its frames depend on, `piecewise_parameters`), and each window of frames
[start, stop) only synthesises its own samples, from the frames the synthesis reads:

    frames      | start-r | ... | start  .......  stop | ... | stop+r |
    harmonics             [=====|=====================|=====)             1 frame each side
    noise       [===============|=====================|==============)    r = noise_reach
    kept                        [=====================)

so a window equals the whole utterance's source on its samples (to float rounding).

The white noise is a fixed table indexed by sample position (period about 65 s), so the
source is a deterministic function of (mel, F0, phi_0), the same in a window as in the whole.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import torch

from wavenet import mulaw
from wavenet.caching import tensor_cache
from wavenet.excitation import (
    TWO_PI,
    advance_phase,
    frame_centre,
    frame_to_samples,
    sample_phase,
)
from wavenet.features import FeatureSpec
from wavenet.noise_gate import apply_gate
from wavenet.parallel import submit
from wavenet.source import (
    HarmonicNoiseSource,
    SourceOutput,
    context_frames,
    filtered_noise,
    harmonic_sum,
    noise_output,
    source_gate,
    training_free_parts,
)

__all__ = [
    "PIECE_FRAMES",
    "SOURCE_SCALE",
    "WHITE_PERIOD",
    "SourceParameters",
    "SourceSteps",
    "noise_reach",
    "pieces",
    "piecewise_parameters",
    "source_outputs",
    "source_parameters",
    "source_shift_scale",
]

WHITE_PERIOD = 1 << 20  # samples of the white-noise table (65 s at 16 kHz), then repeated
WHITE_SEED = 0
# z's scale in the source step: an eightieth of a mu-law bin (2 / 255) near zero. At 1e-3 the
# logistic's tails were heard: an untrained student scored 0.05 PESQ-WB below its source (8
# held-out clips), at 1e-4 it scores as the source.
SOURCE_SCALE = 1e-4
# Log-mels of audio in [-1, 1] stay below ~3 (a full-scale sine: 2.3); a sent mel far above
# that would overflow exp() in the source's fit (float32 beyond ~88) and make NaN audio.
MEL_CEILING = 20.0
# Frames of source parameters computed together (`pieces`): 4.1 s, so that a long utterance's
# pieces run side by side on a pool, each with `context_frames` more on both sides (11 for
# the default source, 22 with the noise gate of 5 steps).
PIECE_FRAMES = 256


@tensor_cache(1)
def _white_table() -> torch.Tensor:
    return torch.randn(WHITE_PERIOD, generator=torch.Generator().manual_seed(WHITE_SEED))


def source_white(batch: int, start: int, stop: int, spec: FeatureSpec, device) -> torch.Tensor:
    """The white noise of frames [start, stop), as `wavenet.source.white_noise` shapes it
    ((B, frames * hop + n_fft - hop), sample u of the padded frames at table position
    (start * hop + u) mod WHITE_PERIOD), the same row for every item."""
    length = (stop - start) * spec.hop_length + spec.n_fft - spec.hop_length
    first = start * spec.hop_length
    index = torch.arange(first, first + length) % WHITE_PERIOD
    return _white_table()[index].to(device).expand(batch, -1)


def noise_reach(spec: FeatureSpec) -> int:
    """r: frames each side of a hop block whose noise `filtered_noise` sums into it:
    r = ceil(max(L, n_fft - L - hop) / hop), L = (n_fft - hop) // 2 (2 for the default)."""
    left = (spec.n_fft - spec.hop_length) // 2
    return math.ceil(max(left, spec.n_fft - left - spec.hop_length) / spec.hop_length)


class SourceParameters(NamedTuple):
    """The source's frame-rate parameters, gains applied."""

    amplitudes: torch.Tensor  # g_k A_k (B, K, frames)
    magnitude: torch.Tensor  # g S (B, n_fft // 2 + 1, frames)
    gate: torch.Tensor  # the noise's gate G (B, 1, frames), `wavenet.noise_gate`

    def frames(self, rows, start: int, stop: int) -> SourceParameters:
        """Rows `rows` (a slice or indices), frames [start, stop)."""
        return SourceParameters(*(part[rows, :, start:stop] for part in self))


def source_parameters(
    source: HarmonicNoiseSource,
    mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor | None = None,
    shifted: torch.Tensor | None = None,
    start: int = 0,
) -> SourceParameters:
    """g_k A_k and g S of every frame of whole utterances `mel` (B, n_mels, frames), F0 `f0`
    (B, frames), with the gains' gradients (`training_free_parts` has nothing to learn).
    Resynthesis rounds also read `phase` (phi before the first sample, (B,)) and the white
    noise table from frame `start` on (where `mel` begins in a longer utterance); without
    them neither matters. `shifted` (B,) bool: items whose F0 is shifted from their mel's
    (`training_free_parts`); None = none."""
    spec, config = source.spec, source.config
    white = None
    if config.resynthesis:
        white = source_white(f0.shape[0], start, start + f0.shape[-1], spec, mel.device)
    f0 = f0.float()
    with torch.no_grad(), torch.autocast(mel.device.type, enabled=False):
        log_mel = mel.float().clamp(max=MEL_CEILING)
        amplitudes, magnitude = training_free_parts(
            log_mel, f0, phase, white, spec, config, shifted
        )
        gate = source_gate(log_mel, magnitude, spec, config)
    gains = source.log_harmonic_gain.exp().view(1, -1, 1)
    noise_gain = source.log_noise_gain.exp()[(f0 > 0).long()].unsqueeze(1)
    return SourceParameters(amplitudes * gains, magnitude * noise_gain, gate)


def pieces(frames: int, context: int) -> list[tuple[int, int, int, int]]:
    """(first, start, stop, last) of each piece of `frames` frames whose source parameters
    are computed together: frames [start, stop), PIECE_FRAMES at most, computed on
    [first, last), `context` frames wider each side where the utterance has them. Fixed by
    the length alone, so the parameters do not depend on how many threads computed them."""
    bounds = range(0, frames, PIECE_FRAMES)
    return [
        (max(start - context, 0), start, stop, min(stop + context, frames))
        for start in bounds
        for stop in [min(start + PIECE_FRAMES, frames)]
    ]


def piecewise_parameters(
    source: HarmonicNoiseSource,
    mel: torch.Tensor,
    f0: torch.Tensor,
    phase: torch.Tensor,
    shifted: torch.Tensor,
    pool: ThreadPoolExecutor | None = None,
) -> Callable[[int, int], SourceParameters]:
    """`source_parameters` of whole utterances, computed piece by piece (`pieces`), each on
    its window with the context its frames depend on (`wavenet.source.context_frames`), so
    that every frame equals the whole computation's to float rounding. With a `pool` the
    pieces are computed there, all submitted at once; the returned function gives frames
    [start, stop), waiting for the pieces they lie in."""
    spec = source.spec
    context = context_frames(spec, source.config)
    parts, at_start, previous = [], phase, 0
    for first, start, stop, last in pieces(f0.shape[-1], context):
        at_start, previous = advance_phase(f0, spec, at_start, previous, start), start
        window_f0 = f0[:, first:last]
        window_phase = _window_phase(window_f0, spec, at_start, (start - first) * spec.hop_length)
        keep = slice(start - first, stop - first)
        window = (mel[..., first:last], window_f0, window_phase, shifted, first)
        job = functools.partial(_kept_frames, keep, source, *window)
        parts.append((start, stop, submit(pool, job) if pool else job()))

    def frames(start: int, stop: int) -> SourceParameters:
        wanted = [
            (part.result() if isinstance(part, Future) else part).frames(
                slice(None), max(start, low) - low, min(stop, high) - low
            )
            for low, high, part in parts
            if low < stop and start < high
        ]
        if len(wanted) == 1:
            return wanted[0]
        return SourceParameters(*(torch.cat(values, -1) for values in zip(*wanted, strict=True)))

    return frames


def _kept_frames(keep: slice, *arguments) -> SourceParameters:
    return source_parameters(*arguments).frames(slice(None), keep.start, keep.stop)


def _window_phase(
    f0: torch.Tensor, spec: FeatureSpec, phase: torch.Tensor, samples: int
) -> torch.Tensor:
    """phi_0 of a window whose sample `samples` must start at `phase` (B,):

        phi_0 = phase - 2 pi sum_{u < samples} f0_u / sr   (the window's own F0 track)

    so that from there on the window's phase equals the whole utterance's. `f0` is the
    window's F0 from its first frame to at least the frame after sample `samples`."""
    f0_t, _ = frame_to_samples(f0, spec.hop_length, frame_centre(spec))
    zero = torch.zeros(phase.shape, dtype=torch.float64, device=phase.device)
    _, advance = sample_phase(f0_t[:, :samples], spec.sample_rate, zero)
    return torch.remainder(phase.double() - advance, TWO_PI)


def source_outputs(
    source: HarmonicNoiseSource, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor
) -> SourceOutput:
    """The whole utterance's source: harmonic, noise and noise_std, each (B, frames * hop),
    with the gains' gradients: `HarmonicNoiseSource.forward` with the position-indexed noise
    in place of a drawn one."""
    spec = source.spec
    parameters = source_parameters(source, mel, f0, phase)
    f0 = f0.float()
    harmonic = harmonic_sum(parameters.amplitudes, f0, phase, spec)
    batch, frames = f0.shape
    white = source_white(batch, 0, frames, spec, mel.device)
    return noise_output(harmonic, parameters.magnitude, parameters.gate, white, spec)


class SourceSteps:
    """The source step of one batch of utterances, window by window (module docstring).

    Args:
        source (HarmonicNoiseSource): The student's source (its gains).
        mel (Tensor): Log-mel (B, n_mels, frames), the whole utterance.
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced.
        mel_lengths (Tensor | None): Real frames per item of a zero-padded batch (B,): each
            item's source is then computed on its own frames, as if it were alone (past its
            end: mu 0 and SOURCE_SCALE).
        shifted (Tensor | None): Items whose F0 is shifted from their mel's (B,) bool
            (`wavenet.source.training_free_parts`); None = none.
        phase (Tensor | None): phi_0 (B,), the excitation's phase before the first sample,
            which resynthesis rounds read; None = 0.
        pool (ThreadPoolExecutor | None): Where the parameters' pieces are computed
            (`piecewise_parameters`); None = here, now.
    """

    def __init__(
        self,
        source: HarmonicNoiseSource,
        mel: torch.Tensor,
        f0: torch.Tensor,
        mel_lengths: torch.Tensor | None = None,
        shifted: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
        pool: ThreadPoolExecutor | None = None,
    ):
        self.source, self.f0 = source, f0.float()
        batch, frames = f0.shape
        if shifted is None:
            shifted = torch.zeros(batch, dtype=torch.bool)
        if phase is None:
            phase = torch.zeros(batch, dtype=torch.float64)
        shifted = shifted.to(device=f0.device, dtype=torch.bool)
        phase = phase.to(f0.device)
        self.lengths = [frames] * batch if mel_lengths is None else mel_lengths.tolist()
        self.padded = mel_lengths is not None
        if not self.padded:
            self._items = [piecewise_parameters(source, mel, f0, phase, shifted, pool)]
        else:  # each item on its own frames
            self._items = [
                piecewise_parameters(
                    source,
                    mel[i : i + 1, :, :length],
                    f0[i : i + 1, :length],
                    phase[i : i + 1],
                    shifted[i : i + 1],
                    pool,
                )
                for i, length in enumerate(self.lengths)
            ]

    def _parameters(self, rows, start: int, stop: int) -> SourceParameters:
        """Frames [start, stop) of rows `rows` (a slice of all rows, or indices of items of a
        padded batch whose frames reach `stop`)."""
        if not self.padded:
            return self._items[0](start, stop).frames(rows, 0, stop - start)
        parts = [self._items[item](start, stop) for item in rows.tolist()]
        return SourceParameters(*(torch.cat(values) for values in zip(*parts, strict=True)))

    def shift_scale(
        self, phase: torch.Tensor | None, start: int = 0, stop: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first affine step's (mu_src, log s_src) for frames [start, stop).

        Args:
            phase (Tensor | None): The excitation's phase before frame `start` (B,); None = 0.
            start (int): First frame wanted.
            stop (int | None): End frame (exclusive); None = all frames.

        Returns:
            tuple: mu_src and log s_src, each (B, (stop - start) * hop), float32.
        """
        stop = self.f0.shape[-1] if stop is None else stop
        if not 0 <= start < stop <= self.f0.shape[-1]:
            raise ValueError(f"frames [{start}, {stop}) are not within {self.f0.shape[-1]} frames")
        if phase is None:
            phase = torch.zeros(self.f0.shape[0], dtype=torch.float64, device=self.f0.device)
        hop = self.source.spec.hop_length
        context = noise_reach(self.source.spec)
        # Items whose windows end alike (all, without padding) are computed together.
        groups: dict[tuple[int, int], list[int]] = {}
        for item, length in enumerate(self.lengths):
            end = min(stop, length)
            if end > start:
                groups.setdefault((end, min(stop + context, length)), []).append(item)
        if not self.padded:
            (end, horizon), _ = groups.popitem()
            mu = self._window(slice(None), phase, start, end, horizon)
            return mu, torch.full_like(mu, math.log(SOURCE_SCALE))
        mu = torch.zeros(self.f0.shape[0], (stop - start) * hop, device=self.f0.device)
        for (end, horizon), items in groups.items():
            rows = torch.tensor(items, device=self.f0.device)
            mu[rows, : (end - start) * hop] = self._window(rows, phase[rows], start, end, horizon)
        return mu, torch.full_like(mu, math.log(SOURCE_SCALE))

    def _window(
        self, rows, phase: torch.Tensor, start: int, stop: int, horizon: int
    ) -> torch.Tensor:
        """mu_src of frames [start, stop) of rows `rows` from the phase before frame `start`;
        `horizon`: the last frame any of it reads (stop + noise_reach, or the rows' end)."""
        spec = self.source.spec
        hop, reach = spec.hop_length, noise_reach(spec)
        first, last = max(start - reach, 0), min(stop + reach, horizon)
        parameters = self._parameters(rows, first, last)
        f0 = self.f0[rows]
        before, after = max(start - 1, 0), min(stop + 1, horizon)
        harmonic_phase = _window_phase(
            f0[:, before : start + 1], spec, phase, (start - before) * hop
        )
        amplitudes = parameters.amplitudes[..., before - first : after - first]
        harmonic = harmonic_sum(amplitudes, f0[:, before:after], harmonic_phase, spec)
        white = source_white(f0.shape[0], first, last, spec, f0.device)
        noise = apply_gate(filtered_noise(parameters.magnitude, white, spec), parameters.gate, spec)
        samples = (stop - start) * hop
        harmonic = harmonic.narrow(-1, (start - before) * hop, samples)
        noise = noise.narrow(-1, (start - first) * hop, samples)
        return mulaw.compress((harmonic + noise).clamp(-1.0, 1.0))


def source_shift_scale(
    source: HarmonicNoiseSource, mel: torch.Tensor, f0: torch.Tensor, phase: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first affine step's (mu_src, log s_src) of whole utterances, each (B, frames * hop):
    `SourceSteps(source, mel, f0, phase=phase).shift_scale(phase)`."""
    return SourceSteps(source, mel, f0, phase=phase).shift_scale(phase)
