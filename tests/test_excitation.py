import math

import pytest
import torch
from conftest import tiny_spec

from wavenet.excitation import (
    ExcitationSpec,
    advance_phase,
    check_f0,
    excitation,
    frame_centre,
    frame_to_samples,
    initial_phase,
    interpolate_voiced,
    sample_phase,
)
from wavenet.features import FeatureSpec


def test_frame_centre_matches_feature_extraction():
    """An impulse on frame i's centre lies equally far from frames i - 1 and i + 1."""
    spec = tiny_spec()
    assert frame_centre(spec) == spec.hop_length / 2
    assert frame_centre(FeatureSpec()) == 128
    frame, hop = 5, spec.hop_length
    audio = torch.zeros(1, 12 * hop)
    audio[0, frame * hop + int(frame_centre(spec))] = 1.0
    energy = spec.extract(audio).exp().sum(dim=1)[0]
    assert energy[frame] > energy[frame - 1]
    torch.testing.assert_close(energy[frame - 1], energy[frame + 1], rtol=1e-4, atol=0)


def test_frame_to_samples_hits_f0_at_centres_and_holds_ends():
    hop = 16
    f0 = torch.tensor([[100.0, 120.0, 150.0, 130.0]])
    f0_t, v_t = frame_to_samples(f0, hop)
    assert f0_t.shape == v_t.shape == (1, 4 * hop)
    centres = torch.arange(4) * hop + hop // 2
    torch.testing.assert_close(f0_t[0, centres], f0[0])
    assert (f0_t[0, : hop // 2] == 100.0).all()
    assert (f0_t[0, 3 * hop + hop // 2 :] == 130.0).all()
    # half-way between centres 0 and 1
    torch.testing.assert_close(f0_t[0, hop], torch.tensor(110.0))
    assert (v_t == 1).all()


def test_no_interpolation_towards_unvoiced_frames():
    hop = 16
    f0 = torch.tensor([[200.0, 0.0, 0.0, 100.0, 110.0]])
    f0_t, v_t = frame_to_samples(f0, hop)
    # voicing switches at the hop-block boundary (nearest frame centre)
    torch.testing.assert_close(v_t[0], (f0[0] > 0).float().repeat_interleave(hop))
    # the voiced side of a boundary holds the voiced frame's F0, never ramps towards 0
    assert (f0_t[0, :hop] == 200.0).all()
    assert (f0_t[0, 3 * hop : 3 * hop + hop // 2 + 1] == 100.0).all()
    assert (f0_t[0, hop : 3 * hop] == 0).all()


def test_unvoiced_frames_are_zero_in_every_channel():
    """Definition: an unvoiced frame's hop block is zero in all 2H + 1 channels (v too); the
    phase stands still there, so the voiced frames after it carry on from where it stopped."""
    spec, ex = tiny_spec(), ExcitationSpec(harmonics=3)
    f0 = torch.tensor([[300.0, 300.0, 0.0, 0.0, 300.0]])
    e, _ = excitation(f0, spec, ex, torch.zeros(1))
    hop = spec.hop_length
    assert e.shape == (1, 7, 5 * hop)
    assert (e[..., 2 * hop : 4 * hop] == 0).all()
    assert (e[0, -1, : 2 * hop] == 1).all() and (e[0, -1, 4 * hop :] == 1).all()
    phi, _ = sample_phase(frame_to_samples(f0, hop)[0], spec.sample_rate, torch.zeros(1))
    assert (phi[0, 2 * hop : 4 * hop] == phi[0, 2 * hop - 1]).all()


def test_streamed_chunks_equal_the_whole_utterance():
    spec, ex = FeatureSpec(), ExcitationSpec()
    generator = torch.Generator().manual_seed(0)
    frames = 40
    f0 = 100 + 150 * torch.rand(2, frames, generator=generator)
    f0[0, 10:14] = 0.0
    f0[1, 25:] = 0.0
    phase0 = initial_phase(2, generator)
    whole, whole_end = excitation(f0, spec, ex, phase0)
    phase, pieces = phase0, []
    for start, stop in [(0, 7), (7, 8), (8, 23), (23, 40)]:
        chunk, phase = excitation(f0, spec, ex, phase, start, stop)
        pieces.append(chunk)
    torch.testing.assert_close(torch.cat(pieces, -1), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(phase, whole_end, atol=1e-9, rtol=0)
    # skipping ahead: the phase at frame 23 starts the chunk [23, 40) exactly
    skipped = advance_phase(f0, spec, phase0, 0, 23)
    tail, _ = excitation(f0, spec, ex, skipped, 23, 40)
    torch.testing.assert_close(tail, whole[..., 23 * spec.hop_length :], atol=1e-5, rtol=0)


def test_phase_stays_exact_over_a_long_utterance():
    """10 minutes at a constant 220 Hz: the wrapped float64 phase is 2 pi f t / sr exactly."""
    sample_rate, samples = 16000, 16000 * 600
    f0 = torch.full((1, samples), 220.0)
    phi, _ = sample_phase(f0, sample_rate, torch.zeros(1))
    t = samples - 1
    exact = math.remainder(2 * math.pi * 220.0 * (t + 1) / sample_rate, 2 * math.pi)
    assert abs(math.remainder(float(phi[0, t]) - exact, 2 * math.pi)) < 1e-6


def test_harmonics_above_nyquist_are_zero():
    spec, ex = tiny_spec(), ExcitationSpec(harmonics=8)  # Nyquist 4 kHz
    f0 = torch.full((1, 6), 900.0)  # k = 1..4 below, 5..8 above
    e, _ = excitation(f0, spec, ex, torch.zeros(1))
    sines, cosines = e[0, :8], e[0, 8:16]
    assert (sines[4:] == 0).all() and (cosines[4:] == 0).all()
    assert (cosines[:4].abs().amax(-1) > 0.9).all()


def test_fundamental_channel_has_the_f0_frequency():
    spec, ex = FeatureSpec(), ExcitationSpec(harmonics=2)
    f0_hz, frames = 187.0, 64
    e, _ = excitation(torch.full((1, frames), f0_hz), spec, ex, torch.tensor([0.3]))
    fundamental = e[0, 0].double()
    spectrum = torch.fft.rfft(
        fundamental * torch.hann_window(len(fundamental), dtype=torch.float64)
    )
    bin_hz = spec.sample_rate / len(fundamental)
    assert abs(int(spectrum.abs().argmax()) * bin_hz - f0_hz) <= bin_hz
    second = torch.fft.rfft(e[0, 1].double()).abs().argmax() * bin_hz
    assert abs(float(second) - 2 * f0_hz) <= bin_hz
    # sin^2 + cos^2 = v where voiced
    torch.testing.assert_close(e[0, 0] ** 2 + e[0, 2] ** 2, e[0, 4], atol=1e-5, rtol=0)


def test_initial_phase_is_seeded_and_in_range():
    first = initial_phase(5, torch.Generator().manual_seed(3))
    again = initial_phase(5, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.dtype == torch.float64
    assert ((first >= 0) & (first < 2 * math.pi)).all()


@pytest.mark.parametrize(
    ("f0", "message"),
    [
        (torch.tensor([[100.0, float("nan")]]), "NaN"),
        (torch.tensor([[100.0, -5.0]]), ">= 0"),
        (torch.tensor([[100.0, 5000.0]]), "<= 1000"),
        (torch.tensor([100.0, 120.0]), "batch, frames"),
    ],
)
def test_bad_f0_is_rejected_by_name(f0, message):
    with pytest.raises(ValueError, match=message):
        check_f0(f0, f0_max=ExcitationSpec().f0_max)
    with pytest.raises(ValueError, match="3 frames, the mel has 4"):
        check_f0(torch.ones(1, 3), frames=4)


def reference_interpolation(values, voiced, hop, centre):
    """interpolate_voiced's definition, sample by sample."""
    frames = len(values)
    out, flags = [], []
    for t in range(frames * hop):
        p = (t - centre) / hop
        left = min(max(math.floor(p), 0), frames - 1)
        right = min(left + 1, frames - 1)
        w = min(max(p - math.floor(p), 0.0), 1.0) if 0 <= p < frames - 1 else 0.0
        nearest = min(max(math.floor(p + 0.5), 0), frames - 1)
        if voiced[left] and voiced[right]:
            value = (1 - w) * values[left] + w * values[right]
        else:
            value = values[left] if voiced[left] else values[right]
        flags.append(float(voiced[nearest]))
        out.append(value * flags[-1])
    return torch.tensor(out, dtype=torch.float64), torch.tensor(flags, dtype=torch.float64)


@pytest.mark.parametrize("centre", [4.0, 3.5, 0.0, 8.0])
def test_interpolation_matches_its_definition_sample_by_sample(centre):
    generator = torch.Generator().manual_seed(int(centre * 2))
    values = torch.rand(3, 12, generator=generator, dtype=torch.float64)
    voiced = torch.rand(3, 12, generator=generator) > 0.4
    got, v = interpolate_voiced(values, voiced, 8, centre)
    for item in range(3):
        want, flags = reference_interpolation(
            values[item].tolist(), voiced[item].tolist(), 8, centre
        )
        torch.testing.assert_close(got[item], want, atol=1e-12, rtol=0)
        torch.testing.assert_close(v[item], flags)
