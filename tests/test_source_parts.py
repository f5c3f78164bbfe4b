"""The source's parts: harmonic synthesis, the analysis window's view, responses, prediction."""

import math

import pytest
import torch

from wavenet import mel_envelope
from wavenet.analysis_window import window_moments
from wavenet.excitation import frame_centre, frame_to_samples, sample_phase
from wavenet.features import FeatureSpec
from wavenet.harmonic_response import chirp_gain, harmonic_response
from wavenet.harmonic_synthesis import harmonic_sum
from wavenet.mel_prediction import predicted_mel
from wavenet.noise_synthesis import filtered_noise, white_noise

SPEC = FeatureSpec()
# Small frames; the second centres its frames between samples (win_length odd).
SMALL = [
    FeatureSpec(n_fft=256, win_length=256, hop_length=64),
    FeatureSpec(n_fft=256, win_length=255, hop_length=64),
]
VOICED = [[0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1]]


def reference_ramps(voiced: list, t: int, spec: FeatureSpec) -> tuple:
    """Sample t's two frames (held ends) and their weights, by the synthesis's definition."""
    frames, centre = len(voiced), frame_centre(spec)
    position = (t - centre) / spec.hop_length
    w = position - math.floor(position)
    a, b = max(math.floor(position), 0), min(math.floor(position) + 1, frames - 1)
    left, right = (a if voiced[a] else b), (b if voiced[b] else a)
    if voiced[a] and voiced[b]:
        return left, right, 1 - w, w
    if voiced[a]:
        return left, right, max(0.0, 1 - 2 * w), 0.0
    return left, right, 0.0, (max(0.0, 2 * w - 1) if voiced[b] else 0.0)


def reference_sum(amplitudes, f0, phase, spec) -> torch.Tensor:
    """harmonic_synthesis's definition, sample by sample in float64."""
    frames, hop, centre = f0.shape[-1], spec.hop_length, frame_centre(spec)
    phi, _ = sample_phase(frame_to_samples(f0.double(), hop, centre)[0], spec.sample_rate, phase)
    out = torch.zeros(f0.shape[0], frames * hop, dtype=torch.float64)
    for item in range(f0.shape[0]):
        voiced, hz = (f0[item] > 0).tolist(), f0[item].double().tolist()
        for t in range(frames * hop):
            left, right, to_left, to_right = reference_ramps(voiced, t, spec)
            for k in range(1, amplitudes.shape[1] + 1):
                if k * max(hz[left], hz[right]) >= spec.sample_rate / 2:
                    break
                value = to_left * amplitudes[item, k - 1, left]
                value += to_right * amplitudes[item, k - 1, right]
                out[item, t] += float(value) * math.sin(k * float(phi[item, t]))
    return out


@pytest.mark.parametrize("spec", SMALL)
def test_harmonic_sum_is_its_definition_sample_by_sample(spec):
    """Fades at voicing boundaries, held F0, harmonics dropped at Nyquist (the 7 kHz frame)."""
    voiced = torch.tensor(VOICED, dtype=torch.bool)
    f0 = torch.tensor([[0, 0, 300, 320, 900, 7000, 0, 250, 0, 260, 255, 0]] * 2) * voiced
    f0[1] = torch.tensor([100, 110, 120, 0, 0, 0, 60, 3000, 2900, 0, 0, 80.0])
    amplitudes = torch.rand(2, 40, 12, generator=torch.Generator().manual_seed(0))
    phase = torch.tensor([0.3, 5.0], dtype=torch.float64)
    made = harmonic_sum(amplitudes, f0.float(), phase, spec)
    expected = reference_sum(amplitudes, f0, phase, spec)
    assert made.shape == expected.shape
    assert (made.double() - expected).abs().max() < 1e-5 * expected.abs().max()
    assert expected[0, : 2 * spec.hop_length].abs().max() == 0  # unvoiced: silent


@pytest.mark.parametrize("spec", SMALL)
def test_window_moments_are_the_windowed_sums_of_the_synthesis_envelope(spec):
    values = torch.rand(2, 1, 12, generator=torch.Generator().manual_seed(1))
    voiced = torch.tensor(VOICED, dtype=torch.bool)
    hop = spec.hop_length
    envelope = torch.zeros(2, 12 * hop, dtype=torch.float64)
    for item in range(2):
        for t in range(12 * hop):
            left, right, to_left, to_right = reference_ramps(voiced[item].tolist(), t, spec)
            envelope[item, t] = to_left * values[item, 0, left] + to_right * values[item, 0, right]
    padded = torch.nn.functional.pad(envelope, ((spec.n_fft - hop) // 2, spec.n_fft))
    window = mel_envelope.stft_window(spec)
    frames = padded.unfold(-1, spec.n_fft, hop)[:, :12]
    first = (frames * window).sum(-1) / window.sum()
    second = (frames**2 * window**2).sum(-1) / (window**2).sum()
    got_first, got_second = window_moments(values, voiced, spec)
    torch.testing.assert_close(got_first[:, 0].double(), first, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_second[:, 0].double(), second, atol=1e-6, rtol=1e-5)


def test_a_steady_harmonic_reads_the_sinusoid_response_in_its_band():
    """Sweep 0: each stored band is R_0 at k f0 within 5 % of the harmonic's peak band (R_0
    is read at the nearest point of a grid 1/8 bin apart, where the narrow low bands split a
    lobe a few % differently), and the bands left out hold under 0.5 % of its mel."""
    f0 = torch.full((1, 8), 180.0)
    response = harmonic_response(f0, SPEC, 40)
    one_hot = torch.eye(40).unsqueeze(-1).expand(40, 40, 8)
    dense = torch.stack([response.to_bands(row[None])[0, :, 4] for row in one_hot])
    k = torch.arange(1, 41, dtype=torch.float32)
    exact = mel_envelope.sinusoid_mel_response(180.0 * k, SPEC)  # (40, n_mels)
    stored = dense > 0
    peak = exact.amax(-1, keepdim=True)
    assert ((dense - exact).abs() * stored / peak).amax() < 0.05
    assert ((exact * ~stored).sum(-1) / exact.sum(-1)).max() < 0.005


def test_chirp_gain_grows_with_the_sweep_up_to_the_spacing_cap():
    sweeps = torch.tensor([0.0, 2.0, 8.0, 32.0, 128.0])
    gain = chirp_gain(sweeps, torch.tensor(12.8), SPEC)
    assert abs(float(gain[0]) - 1) < 1e-4  # a steady harmonic
    assert (gain.diff() > 0).all() and gain[-1] < 2.0  # cap: sqrt(pi E s / 4) / sum|X_0|
    power = FeatureSpec(power=2.0)
    torch.testing.assert_close(chirp_gain(sweeps, torch.tensor(12.8), power), torch.ones(5))


@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("glide", [False, True])
def test_predicted_mel_is_the_mel_of_the_synthesis(power, glide):
    """A voice whose level swings by 3x over 30 frames: its extracted mel per band group
    within 1 % of the prediction when steady, 6 % when F0 glides 120 -> 200 Hz in 1 s."""
    spec = FeatureSpec(power=power)
    frames, harmonics = 60, 60
    f0 = torch.linspace(120, 200, frames)[None] if glide else torch.full((1, frames), 150.0)
    k = torch.arange(1, harmonics + 1).view(1, -1, 1)
    swing = 1 + 0.5 * torch.sin(torch.arange(frames) / 5.0)
    amplitudes = (0.2 / k) * swing * (k * f0.unsqueeze(1) < spec.f_max)
    made = harmonic_sum(amplitudes, f0, torch.zeros(1, dtype=torch.float64), spec)
    extracted = mel_envelope.linear_mel(spec.extract(made), spec)[0, :, 4:-4]
    level = torch.zeros(1, spec.n_mels, frames)
    response = harmonic_response(f0, spec, harmonics)
    predicted = predicted_mel(amplitudes, level, f0, response, spec)[0, :, 4:-4]
    for bands in (slice(0, 20), slice(20, 50), slice(50, 80)):
        error = (predicted[bands].sum(0) / extracted[bands].sum(0)).log().abs().max()
        assert error < (0.06 if glide else 0.01)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_predicted_mel_of_noise_is_its_log_mean_mel(power):
    """Noise 30x louder from frame 12 on: the predicted mel within 8 % of the geometric mean
    of 16 draws' mels per band group, away from the step and the ends, and on its loud side."""
    spec = FeatureSpec(power=power)
    frames = 24
    level = 1e-2 * torch.linspace(1, 0.2, spec.n_mels).view(1, -1, 1).expand(1, -1, frames)
    level = level * torch.where(torch.arange(frames) >= 12, 30.0**power, 1.0)
    magnitude = mel_envelope.noise_envelope(None, spec, level)
    draws = [
        white_noise(1, frames, spec, torch.Generator().manual_seed(seed)) for seed in range(16)
    ]
    logs = [
        mel_envelope.linear_mel(spec.extract(filtered_noise(magnitude, white, spec)), spec).log()
        for white in draws
    ]
    measured = torch.stack(logs).mean(0).exp()[0]
    no_harmonics = torch.zeros(1, 0, frames)
    f0 = torch.zeros(1, frames)
    response = harmonic_response(f0, spec, 0)
    predicted = predicted_mel(no_harmonics, level, f0, response, spec)[0]
    for bands in (slice(0, 20), slice(20, 50), slice(50, 80)):
        ratio = (predicted[bands] / measured[bands]).log().mean(0)
        assert ratio[list(range(4, 8)) + list(range(13, 20))].abs().max() < 0.08
