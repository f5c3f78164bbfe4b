"""The harmonic excitation: F0 per frame in, a sample-rate sine/cosine signal out.

A vocoder is told the pitch as a signal, as neural source-filter and DDSP models do:

    e_t = [v_t sin(k phi_t)]_{k=1..H} ++ [v_t cos(k phi_t)]_{k=1..H} ++ [v_t]    (2H + 1, T)
    phi_t = phi_0 + 2 pi sum_{u <= t} f0_u / sample_rate

with harmonic k zeroed at samples where k f0_t >= sample_rate / 2 (it would alias), and
v_t = 1 in voiced samples, 0 in unvoiced ones. Unvoiced samples are zero in every channel
and their f0_u is 0, so the phase stands still through a pause and runs on from there.

The phase is accumulated in float64 and wrapped to [0, 2 pi), so it stays exact over long
utterances, and a chunk that starts from the phase at the end of the previous chunk equals
the matching slice of the whole utterance's excitation (`excitation(..., start, stop)`).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from wavenet.features import FeatureSpec

__all__ = [
    "TWO_PI",
    "ExcitationSpec",
    "advance_phase",
    "check_f0",
    "excitation",
    "frame_centre",
    "frame_to_samples",
    "harmonic_channels",
    "initial_phase",
    "interpolate_voiced",
    "sample_phase",
]

TWO_PI = 2.0 * math.pi


class ExcitationSpec(BaseModel):
    """The excitation a pitch-aware model is conditioned on. Saved with the model's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 8 as in hn-NSF's sine source (the fundamental and 7 overtones): enough for a network to
    # read the phase and the waveform shape of a glottal period, while the 1x1 convolution
    # that adds e to each gated unit stays small (17 input channels); the full-band spectrum
    # is the source's and the network's job (see wavenet/source.py).
    harmonics: int = Field(
        8, ge=1, le=64, description="H: sine/cosine pairs k = 1..H; e has 2H + 1 channels."
    )
    f0_max: float = Field(
        1000.0,
        gt=0,
        description="Highest F0 accepted, Hz: speech (50-500 Hz) shifted up an octave fits.",
    )

    @property
    def channels(self) -> int:
        """Channels of e: a sine and a cosine per harmonic, and the voicing."""
        return 2 * self.harmonics + 1


def check_f0(f0: torch.Tensor, frames: int | None = None, f0_max: float | None = None) -> None:
    """Raise ValueError naming the problem if `f0` (B, frames) is not a valid F0 track (Hz)."""
    if f0.dim() != 2:
        raise ValueError(f"f0 must be (batch, frames), got shape {tuple(f0.shape)}")
    if frames is not None and f0.shape[-1] != frames:
        raise ValueError(f"f0 has {f0.shape[-1]} frames, the mel has {frames}")
    if not torch.isfinite(f0).all():
        raise ValueError("f0 contains NaN or infinite values")
    if (f0 < 0).any():
        raise ValueError(f"f0 must be >= 0 Hz (0 = unvoiced), got {float(f0.min()):.3g}")
    if f0_max is not None and (f0 > f0_max).any():
        raise ValueError(f"f0 must be <= {f0_max:g} Hz, got {float(f0.max()):.3g}")


def frame_centre(spec: FeatureSpec) -> float:
    """Sample offset of frame 0's window centre, as `FeatureSpec.extract` frames the audio.

    extract pads (n_fft - hop) // 2 zeros on the left and places the Hann window of
    win_length centred in each n_fft frame ((n_fft - win_length) // 2 zeros before it), so
    frame i is centred on sample i * hop + frame_centre(spec): hop / 2 for the default spec.
    """
    window_centre = (spec.n_fft - spec.win_length) // 2 + spec.win_length / 2
    return window_centre - (spec.n_fft - spec.hop_length) // 2


def interpolate_voiced(
    values: torch.Tensor, voiced: torch.Tensor, hop_length: int, centre: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame values at sample rate, interpolated between voiced frame centres only.

    Frame i is centred on sample c_i = i * hop + centre. Sample t lies between the centres
    of frames l = floor(p) and l + 1, p = (t - centre) / hop:

        frames        |    l-1    |     l     |    l+1    |
        centres             *           *           *
        samples             c_{l-1}   t c_l    t'   c_{l+1}
        value_t = (1 - w) x_l + w x_{l+1},  w = p - l        (both frames voiced)
        value_t = x of the voiced one                        (only one voiced)
        v_t     = voiced[round(p)]: switches half-way between centres

    Before the first centre and after the last the end value is held, and across a
    voiced/unvoiced boundary nothing is interpolated towards the unvoiced frame's value.

    Args:
        values (Tensor): Per-frame values (B, C, frames) or (B, frames).
        voiced (Tensor): Voicing per frame (B, frames), bool.
        hop_length (int): Samples per frame.
        centre (float | None): Offset of frame 0's centre; None = hop_length / 2.

    Returns:
        tuple: values (B, C, T) or (B, T), zero where unvoiced, and v (B, T) in {0, 1},
        T = frames * hop_length.
    """
    squeeze = values.dim() == 2
    if squeeze:
        values = values.unsqueeze(1)
    batch, _, frames = values.shape
    if voiced.shape != (batch, frames) or frames == 0:
        raise ValueError(f"voiced must be {(batch, frames)}, frames > 0; got {tuple(voiced.shape)}")
    centre = hop_length / 2 if centre is None else centre
    if not 0 <= centre <= hop_length:
        raise ValueError(f"frame centre {centre} must lie within the first hop block")
    # Pair j spans the centres of frames j - 1 and j (ends held: frame -1 = 0, F = F - 1);
    # each end takes its own value if voiced, else the other end's.
    padded = torch.cat([values[..., :1], values, values[..., -1:]], -1)
    voicing = torch.cat([voiced[:, :1], voiced, voiced[:, -1:]], -1).unsqueeze(1)
    pair_left = torch.where(voicing[..., :-1], padded[..., :-1], padded[..., 1:])
    pair_right = torch.where(voicing[..., 1:], padded[..., 1:], padded[..., :-1])
    # Sample s of block i sits at p = i + (s - centre) / hop: in pair i + floor(.) + 1, and
    # nearest to frame i + round(.); both offsets are a few runs of s, so each run is a slice.
    position = (torch.arange(hop_length, dtype=torch.float64) - centre) / hop_length
    weight = (position - position.floor()).to(device=values.device, dtype=values.dtype)
    out = []
    for offset, run in _runs(position.floor().long() + 1):
        left = pair_left[..., offset : offset + frames, None]
        right = pair_right[..., offset : offset + frames, None]
        out.append(left + weight[run] * (right - left))
    flags = [
        voicing[..., offset : offset + frames, None].expand(-1, -1, -1, run.stop - run.start)
        for offset, run in _runs((position + 0.5).floor().long() + 1)
    ]
    v = torch.cat(flags, -1).reshape(batch, 1, -1).to(values.dtype)
    out = torch.cat(out, -1).reshape(*values.shape[:2], -1) * v
    return (out.squeeze(1) if squeeze else out), v[:, 0]


def _runs(offsets: torch.Tensor) -> list[tuple[int, slice]]:
    """(value, slice) of each run of equal values in a non-decreasing 1-D tensor."""
    values, counts = torch.unique_consecutive(offsets, return_counts=True)
    ends = counts.cumsum(0).tolist()
    starts = [0, *ends[:-1]]
    return [(int(v), slice(a, b)) for v, a, b in zip(values.tolist(), starts, ends, strict=True)]


def frame_to_samples(
    f0: torch.Tensor, hop_length: int, centre: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """F0 (B, frames) in Hz, 0 = unvoiced, to (f0_t, v_t), each (B, frames * hop_length).

    F0 is interpolated between voiced frame centres (see `interpolate_voiced`); f0_t is 0
    and v_t is 0 in unvoiced samples.
    """
    return interpolate_voiced(f0, f0 > 0, hop_length, centre)


def sample_phase(
    f0_samples: torch.Tensor, sample_rate: int, phase: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase phi_t = phi_0 + 2 pi sum_{u <= t} f0_u / sample_rate, wrapped to [0, 2 pi).

    Args:
        f0_samples (Tensor): F0 at sample rate (B, T), Hz.
        sample_rate (int): Samples per second.
        phase (Tensor): phi_0 (B,), radians: the phase before sample 0.

    Returns:
        tuple: phi (B, T) float64, and its last value (B,) (phi_0 if T = 0), from which the
        next chunk goes on.
    """
    cycles = _wrapped_cumsum(f0_samples.double() / sample_rate)
    phi = torch.remainder(cycles + phase.double().unsqueeze(-1) / TWO_PI, 1.0) * TWO_PI
    final = phi[:, -1] if phi.shape[-1] else torch.remainder(phase.double(), TWO_PI)
    return phi, final


def _wrapped_cumsum(cycles: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """sum_{u <= t} cycles_u mod 1 (B, T), summed in blocks so rounding cannot build up.

    A plain float64 cumsum of ten minutes of 220 Hz reaches 1.3e5 cycles and drifts by
    ~1e-4 rad; here each block's running sum stays below `block` cycles, and the blocks'
    totals are wrapped to [0, 1) before they are summed.
    """
    batch, samples = cycles.shape
    padded = torch.nn.functional.pad(cycles, (0, -samples % block))
    inner = torch.cumsum(padded.view(batch, -1, block), dim=-1)
    totals = torch.remainder(inner[..., -1], 1.0)
    offsets = torch.remainder(torch.cumsum(totals, dim=-1) - totals, 1.0)
    wrapped = torch.remainder(inner + offsets.unsqueeze(-1), 1.0)
    return wrapped.view(batch, -1)[:, :samples]


def harmonic_channels(
    phase: torch.Tensor,
    f0_samples: torch.Tensor,
    voicing: torch.Tensor,
    sample_rate: int,
    harmonics: int,
) -> torch.Tensor:
    """e = [v sin(k phi)]_k ++ [v cos(k phi)]_k ++ [v], k = 1..H, zero where k f0 >= sr / 2.

    Args:
        phase (Tensor): phi (B, T), radians (float64 keeps k phi exact).
        f0_samples (Tensor): f0 (B, T), Hz.
        voicing (Tensor): v (B, T) in {0, 1}.
        sample_rate (int): Samples per second.
        harmonics (int): H.

    Returns:
        Tensor: e (B, 2H + 1, T), float32.
    """
    k = torch.arange(1, harmonics + 1, device=phase.device, dtype=torch.float64).view(1, -1, 1)
    angle = torch.remainder(k * phase.double().unsqueeze(1), TWO_PI).float()
    below_nyquist = k.float() * f0_samples.float().unsqueeze(1) < sample_rate / 2
    gate = voicing.float().unsqueeze(1) * below_nyquist
    return torch.cat(
        [gate * torch.sin(angle), gate * torch.cos(angle), voicing.float().unsqueeze(1)], 1
    )


def initial_phase(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """phi_0 (batch,) float64, uniform in [0, 2 pi): drawn per item in training; in serving
    from a generator seeded with the request's seed, so the same request sounds the same."""
    return torch.rand(batch, generator=generator, dtype=torch.float64) * TWO_PI


def _window_f0(
    f0: torch.Tensor, spec: FeatureSpec, start: int, stop: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f0_t, v_t) for the samples of frames [start, stop), equal to that slice of the whole.

    A sample's F0 depends on the two frames whose centres enclose it, so the window is
    interpolated with one frame of context each side and the context samples dropped:

        frames     | start-1 | start | ... | stop-1 | stop |
        kept                 [==========================)
    """
    frames = f0.shape[-1]
    stop = frames if stop is None else stop
    if not 0 <= start <= stop <= frames:
        raise ValueError(f"window [{start}, {stop}) is not within the {frames} frames of f0")
    first, last = max(start - 1, 0), min(stop + 1, frames)
    f0_t, v_t = frame_to_samples(f0[:, first:last], spec.hop_length, frame_centre(spec))
    keep = slice((start - first) * spec.hop_length, (stop - first) * spec.hop_length)
    return f0_t[:, keep], v_t[:, keep]


def excitation(
    f0: torch.Tensor,
    spec: FeatureSpec,
    excitation_spec: ExcitationSpec,
    phase: torch.Tensor,
    start: int = 0,
    stop: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The excitation e of frames [start, stop) of an F0 track, and the phase it ends on.

    Streaming: chunk n + 1 called with the phase chunk n returned equals the matching slice
    of the whole utterance's e (`advance_phase` skips frames without building e).

    Args:
        f0 (Tensor): F0 (B, frames), Hz, 0 = unvoiced; the whole track (or the window with
            one frame each side), since interpolation reads the neighbouring frames.
        spec (FeatureSpec): The mel's framing (hop, centre, sample rate).
        excitation_spec (ExcitationSpec): Harmonics.
        phase (Tensor): Phase before the window's first sample (B,): phi_0 for start = 0.
        start (int): First frame of the window.
        stop (int | None): End frame (exclusive); None = all frames.

    Returns:
        tuple: e (B, 2H + 1, (stop - start) * hop) float32, and the final phase (B,) float64.
    """
    check_f0(f0, f0_max=excitation_spec.f0_max)
    f0_t, v_t = _window_f0(f0, spec, start, stop)
    phi, final = sample_phase(f0_t, spec.sample_rate, phase)
    return harmonic_channels(phi, f0_t, v_t, spec.sample_rate, excitation_spec.harmonics), final


def advance_phase(
    f0: torch.Tensor, spec: FeatureSpec, phase: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """The phase after frames [start, stop), from the phase before them (B,) float64.

    phi_end = phi_start + 2 pi sum_t f0_t / sample_rate over the window's samples, mod 2 pi:
    where an overlapped window starts, for a streamer that skips ahead.
    """
    f0_t, _ = _window_f0(f0, spec, start, stop)
    return sample_phase(f0_t, spec.sample_rate, phase)[1]
