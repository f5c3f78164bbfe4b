import math

import pytest
import torch

from wavenet import harmonic_response, mel_envelope, mulaw
from wavenet.excitation import TWO_PI, advance_phase, frame_centre, frame_to_samples, sample_phase
from wavenet.features import FeatureSpec
from wavenet.source import (
    HarmonicNoiseSource,
    SourceConfig,
    companded_shift_scale,
    context_frames,
    filtered_noise,
    harmonic_sum,
    noise_std,
    training_free_parts,
    white_noise,
)
from wavenet.synthesis_f0 import mel_envelope as mel_envelope_of

SPEC = FeatureSpec()
RATE = SPEC.sample_rate


def harmonic_signal(f0: float, amplitudes: list[float], seconds: float = 1.0) -> torch.Tensor:
    """sum_k A_k sin(2 pi k f0 t + k^2): a steady voiced sound with a known spectrum."""
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    waves = [a * torch.sin(2 * math.pi * k * f0 * t + k * k) for k, a in enumerate(amplitudes, 1)]
    return torch.stack(waves).sum(0).float()


def measured_amplitudes(x: torch.Tensor, f0: float, harmonics: int) -> torch.Tensor:
    """Least-squares amplitude of each harmonic of `x` over its middle half (steady part)."""
    middle = x[len(x) // 4 : 3 * len(x) // 4].double()
    t = torch.arange(len(x) // 4, 3 * len(x) // 4, dtype=torch.float64) / RATE
    k = torch.arange(1, harmonics + 1, dtype=torch.float64).unsqueeze(1)
    basis = torch.cat([torch.sin(2 * math.pi * k * f0 * t), torch.cos(2 * math.pi * k * f0 * t)])
    coefficients = torch.linalg.lstsq(basis.T, middle.unsqueeze(1)).solution[:, 0]
    return torch.hypot(coefficients[:harmonics], coefficients[harmonics:]).float()


@pytest.mark.parametrize("freq", [150.0, 1234.5, 5000.0])
def test_sinusoid_response_is_the_mel_of_a_sinusoid(freq):
    x = 0.3 * harmonic_signal(freq, [1.0])
    mel = SPEC.extract(x).exp()[:, 10:-10].mean(-1)
    predicted = 0.3 * mel_envelope.sinusoid_mel_response(torch.tensor(freq), SPEC)
    assert (predicted - mel).abs().max() < 2e-3 * mel.max()


def test_harmonic_fit_recovers_known_amplitudes():
    """A steady 200 Hz voice, A_k = 0.2 / k up to 8 kHz: every A_k within 2 %."""
    truth = torch.tensor([0.2 / k for k in range(1, 40)])
    mel = mel_envelope.linear_mel(SPEC.extract(harmonic_signal(200.0, truth.tolist()))[None], SPEC)
    f0 = torch.full((1, mel.shape[-1]), 200.0)
    response = harmonic_response.harmonic_response(f0, SPEC, 48)
    fitted = harmonic_response.harmonic_amplitudes(mel, response, SPEC.power, 30)[0, :, 30]
    assert ((fitted[:39] - truth) / truth).abs().max() < 0.02
    assert (fitted[40:] == 0).all()  # k f0 >= f_max: the mel says nothing


def test_source_reproduces_the_harmonic_amplitudes():
    """The source of a known 220 Hz voice (A_k = 0.3 / k): each of the first 12 harmonics
    within 5 % of the truth, on top of the 10 % noise share in voiced frames."""
    truth = [0.3 / k for k in range(1, 36)]
    log_mel = SPEC.extract(harmonic_signal(220.0, truth))[None]
    f0 = torch.full((1, log_mel.shape[-1]), 220.0)
    with torch.no_grad():
        out = HarmonicNoiseSource(SPEC)(
            log_mel, f0, torch.zeros(1), torch.Generator().manual_seed(0)
        )
    made = measured_amplitudes(out.harmonic[0], 220.0, 12)
    expected = torch.tensor(truth[:12])
    assert ((made - expected) / expected).abs().max() < 0.05


def test_source_is_silent_where_the_mel_is_at_the_log_floor():
    frames = 40
    log_mel = torch.full((1, SPEC.n_mels, frames), math.log(SPEC.log_floor))
    loud = SPEC.extract(harmonic_signal(180.0, [0.2, 0.1, 0.05], seconds=1.0))[:, :frames]
    log_mel[..., :10], log_mel[..., 30:] = loud[:, :10], loud[:, 30:]
    f0 = torch.zeros(1, frames)
    f0[:, :10], f0[:, 30:] = 180.0, 180.0
    source = HarmonicNoiseSource(SPEC)
    with torch.no_grad():
        out = source(log_mel, f0, torch.zeros(1), torch.Generator().manual_seed(1))
        silent = source(log_mel.clamp(max=math.log(SPEC.log_floor)), f0, torch.zeros(1))
    hop = SPEC.hop_length
    quiet = out.waveform[0, 13 * hop : 27 * hop]  # the floor frames, 3 frames from their ends
    assert 20 * math.log10(float(quiet.pow(2).mean().sqrt()) + 1e-12) < -60
    assert 20 * math.log10(float(out.waveform[0, : 8 * hop].pow(2).mean().sqrt())) > -40
    assert (silent.waveform == 0).all()


def test_filtered_noise_has_the_mel_and_the_std_it_is_given():
    frames = 60
    log_mel = SPEC.extract(
        0.05 * torch.randn(1, frames * SPEC.hop_length, generator=torch.Generator().manual_seed(2))
    )
    mel = mel_envelope.linear_mel(log_mel, SPEC)
    magnitude = mel_envelope.noise_envelope(mel, SPEC)
    noise = filtered_noise(
        magnitude, white_noise(1, frames, SPEC, torch.Generator().manual_seed(3)), SPEC
    )
    again = SPEC.extract(noise)[..., 4:-4]
    assert (again - log_mel[..., 4:-4]).mean().abs() < 0.05  # no level bias
    std = noise_std(magnitude, SPEC)[0, 4:-4].mean()
    assert abs(float(noise[0].std() / std) - 1) < 0.05


def test_source_is_deterministic_given_phase_and_generator():
    log_mel = SPEC.extract(harmonic_signal(150.0, [0.2, 0.1], seconds=0.5))[None]
    f0 = torch.full((1, log_mel.shape[-1]), 150.0)
    f0[:, 10:20] = 0.0
    source = HarmonicNoiseSource(SPEC, SourceConfig(refinements=1))
    first, second, other = (
        source(log_mel, f0, torch.tensor([0.5]), torch.Generator().manual_seed(seed)).waveform
        for seed in (4, 4, 5)
    )
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_gradients_reach_the_learnable_gains():
    log_mel = SPEC.extract(harmonic_signal(150.0, [0.2, 0.1, 0.05], seconds=0.5))[None]
    f0 = torch.full((1, log_mel.shape[-1]), 150.0)
    f0[:, 12:20] = 0.0  # unvoiced frames, so both noise gains are used
    source = HarmonicNoiseSource(SPEC, SourceConfig(harmonics=8, refinements=1))
    out = source(log_mel, f0, torch.zeros(1), torch.Generator().manual_seed(0))
    out.companded.pow(2).sum().backward()
    assert source.log_harmonic_gain.grad[:3].abs().min() > 0
    assert source.log_noise_gain.grad.abs().min() > 0


def test_companded_shift_and_scale():
    log_mel = SPEC.extract(harmonic_signal(150.0, [0.2, 0.1], seconds=0.5))[None]
    f0 = torch.full((1, log_mel.shape[-1]), 150.0)
    with torch.no_grad():
        out = HarmonicNoiseSource(SPEC, SourceConfig(refinements=0))(log_mel, f0, torch.zeros(1))
    shift, scale = companded_shift_scale(out, floor=1e-4)
    assert shift.shape == scale.shape == out.harmonic.shape
    torch.testing.assert_close(shift, mulaw.compress(out.harmonic))
    assert (scale >= 1e-4).all() and (scale > 1e-4).any()


def test_mismatched_f0_is_rejected():
    with pytest.raises(ValueError, match="does not match the mel"):
        HarmonicNoiseSource(SPEC)(
            torch.zeros(1, SPEC.n_mels, 10), torch.zeros(1, 9), torch.zeros(1)
        )


def gliding_voice_then_noise(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-mel, F0) of a voice gliding 140 -> 190 Hz with a 4:1 level swing, a pause, and
    noise: every part of the source has something to do."""
    hop = SPEC.hop_length
    f0 = torch.zeros(1, frames)
    f0[0, :24] = torch.linspace(140, 190, 24)
    f0_t = frame_to_samples(f0.double(), hop, frame_centre(SPEC))[0]
    phi = sample_phase(f0_t, RATE, torch.zeros(1))[0][0]
    level = 0.05 * (1.5 + torch.sin(torch.arange(frames * hop) / 3000.0))
    audio = sum(level / k * torch.sin(k * phi) for k in range(1, 30)).float()
    noise = 0.02 * torch.randn(frames * hop, generator=torch.Generator().manual_seed(7))
    audio[28 * hop :] += noise[28 * hop :]
    return SPEC.extract(audio)[None], f0


@pytest.mark.parametrize("resynthesis", [0, 1])
def test_a_window_with_its_context_computes_what_the_whole_does(resynthesis):
    """Frames [start, stop) computed on a window context_frames wider on each side (its white
    noise the whole's at the same samples, its phase meeting the whole's at frame start)
    equal the whole utterance's: amplitudes, noise magnitudes and harmonic samples."""
    config = SourceConfig(resynthesis=resynthesis)
    frames, hop = 44, SPEC.hop_length
    log_mel, f0 = gliding_voice_then_noise(frames)
    white = white_noise(1, frames, SPEC, torch.Generator().manual_seed(3))
    phase = torch.tensor([0.7], dtype=torch.float64)
    with torch.no_grad():
        amplitudes, magnitude = training_free_parts(log_mel, f0, phase, white, SPEC, config)
        whole = harmonic_sum(amplitudes, f0, phase, SPEC)
    context = context_frames(SPEC, config)
    for start, stop in ((context + 3, context + 9), (22, 30)):
        first, last = start - context, min(stop + context, frames)
        at_start = advance_phase(f0, SPEC, phase, 0, start)
        own = frame_to_samples(f0[:, first:last], hop, frame_centre(SPEC))[0]
        advance = sample_phase(own[:, : (start - first) * hop], RATE, torch.zeros(1))[1]
        window_phase = torch.remainder(at_start - advance, TWO_PI)
        window_white = white[:, first * hop : last * hop + SPEC.n_fft - hop]
        window_mel, window_f0 = log_mel[..., first:last], f0[:, first:last]
        with torch.no_grad():
            window = training_free_parts(
                window_mel, window_f0, window_phase, window_white, SPEC, config
            )
            part = harmonic_sum(window[0], window_f0, window_phase, SPEC)
        kept = slice(start - first, stop - first)
        exact = dict(rtol=1e-5, atol=1e-9)  # float rounding only
        torch.testing.assert_close(window[0][..., kept], amplitudes[..., start:stop], **exact)
        torch.testing.assert_close(window[1][..., kept], magnitude[..., start:stop], **exact)
        samples = slice((start - first) * hop, (stop - first) * hop)
        torch.testing.assert_close(part[:, samples], whole[:, start * hop : stop * hop], **exact)
    assert whole[:, 4 * hop : 20 * hop].abs().max() > 0.05  # the voice is there


def test_resynthesis_without_its_phase_or_noise_is_rejected():
    log_mel, f0 = gliding_voice_then_noise(30)
    config = SourceConfig(resynthesis=1)
    with pytest.raises(ValueError, match="resynthesis rounds need the phase and the white"):
        training_free_parts(log_mel, f0, None, None, SPEC, config)
    plain = training_free_parts(log_mel, f0, None, None, SPEC, SourceConfig())
    white = white_noise(1, 30, SPEC, torch.Generator().manual_seed(0))
    again = training_free_parts(log_mel, f0, torch.ones(1), white, SPEC, SourceConfig())
    torch.testing.assert_close(plain, again, rtol=0, atol=0)  # neither phase nor noise used


@pytest.mark.parametrize("resynthesis", [0, 1])
def test_a_shifted_item_never_gets_more_voiced_noise_than_it_starts_with(resynthesis):
    """F0 doubled on the mel's envelope: without `shifted` the rounds raise the voiced noise
    (to fill the gaps between the sparser harmonics, at the old pitch's harmonics); with it,
    the voiced frames' noise stays at most its starting level. Each item of a batch follows
    its own flag."""
    frames = 30
    log_mel, f0 = gliding_voice_then_noise(frames)
    log_mel, f0 = mel_envelope_of(log_mel), f0 * 2
    white = white_noise(1, frames, SPEC, torch.Generator().manual_seed(3))
    phase = torch.tensor([0.7], dtype=torch.float64)
    config = SourceConfig(resynthesis=resynthesis)
    start = training_free_parts(log_mel, f0, phase, white, SPEC, SourceConfig(refinements=0))[1]

    def parts(shifted):
        return training_free_parts(log_mel, f0, phase, white, SPEC, config, shifted)

    voiced = (f0[0] > 0).nonzero()[:, 0]
    raised = parts(None)[1][0][:, voiced] / start[0][:, voiced].clamp(min=1e-12)
    assert raised.max() > 2.0, "the rounds raise no voiced noise: test is vacuous"
    held = parts(torch.tensor([True]))[1][0][:, voiced]
    assert (held <= start[0][:, voiced] * (1 + 1e-5)).all()
    torch.testing.assert_close(parts(torch.tensor([False])), parts(None), rtol=0, atol=0)
    both = training_free_parts(
        log_mel.expand(2, -1, -1), f0.expand(2, -1), phase.expand(2),
        white.expand(2, -1), SPEC, config, torch.tensor([True, False]),
    )  # fmt: skip
    torch.testing.assert_close(both[1][:1], parts(torch.tensor([True]))[1])
    torch.testing.assert_close(both[1][1:], parts(None)[1])


@pytest.mark.parametrize("resynthesis", [0, 1])
def test_an_all_unvoiced_utterance_is_noise_alone(resynthesis):
    """No voiced frame: no harmonic is fitted (K = 0 in the rounds), the harmonic part is
    silent and the noise carries the mel."""
    log_mel, f0 = gliding_voice_then_noise(30)
    f0 = torch.zeros_like(f0)
    white = white_noise(1, 30, SPEC, torch.Generator().manual_seed(3))
    config = SourceConfig(resynthesis=resynthesis)
    amplitudes, magnitude = training_free_parts(log_mel, f0, torch.zeros(1), white, SPEC, config)
    assert amplitudes.abs().max() == 0 and magnitude.max() > 0
    assert harmonic_sum(amplitudes[:, :0], f0, torch.zeros(1), SPEC).abs().max() == 0
