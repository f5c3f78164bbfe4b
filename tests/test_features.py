import math

import pytest
import torch
import torchaudio
from conftest import tiny_spec
from pydantic import ValidationError

from wavenet import FeatureSpec


def test_default_spec_matches_the_design():
    spec = FeatureSpec()
    assert (spec.sample_rate, spec.n_fft, spec.win_length, spec.hop_length) == (
        16000,
        1024,
        1024,
        256,
    )
    assert (spec.n_mels, spec.f_min, spec.f_max, spec.log_floor) == (80, 0.0, 8000.0, 1e-5)


@pytest.mark.parametrize("samples", [1, 15, 16, 17, 100, 160])
def test_frames_are_ceil_of_samples_over_hop(samples):
    spec = tiny_spec()
    mel = spec.extract(torch.randn(2, samples) * 0.1)
    assert mel.shape == (2, spec.n_mels, math.ceil(samples / spec.hop_length))
    assert spec.samples_for(mel.shape[-1]) >= samples
    assert spec.samples_for(mel.shape[-1]) - samples < spec.hop_length


def test_one_dimensional_input_gives_one_mel():
    spec = tiny_spec()
    audio = torch.randn(100) * 0.1
    torch.testing.assert_close(spec.extract(audio), spec.extract(audio[None])[0])


def test_log_floor_clamps_silence():
    spec = tiny_spec()
    mel = spec.extract(torch.zeros(1, 64))
    torch.testing.assert_close(mel, torch.full_like(mel, math.log(spec.log_floor)))


def test_frame_is_centred_on_its_hop_block():
    spec = tiny_spec()
    for block in range(1, 5):
        audio = torch.zeros(1, 6 * spec.hop_length)
        audio[0, block * spec.hop_length + spec.hop_length // 2] = 1.0
        energy = spec.extract(audio).exp().sum(dim=1)[0]
        assert energy.argmax().item() == block


def test_extract_equals_torchaudio_melspectrogram_on_padded_audio():
    spec = tiny_spec()
    audio = torch.randn(1, 5 * spec.hop_length) * 0.1
    side = (spec.n_fft - spec.hop_length) // 2
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=spec.sample_rate,
        n_fft=spec.n_fft,
        win_length=spec.win_length,
        hop_length=spec.hop_length,
        f_min=spec.f_min,
        f_max=spec.f_max,
        n_mels=spec.n_mels,
        power=spec.power,
        center=False,
        norm="slaney",
        mel_scale="slaney",
    )(torch.nn.functional.pad(audio, (side, side)))
    expected = torch.log(reference.clamp(min=spec.log_floor))
    torch.testing.assert_close(spec.extract(audio), expected)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"win_length": 2048}, "win_length"),
        ({"f_max": 9000.0}, "Nyquist"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mel": 80}, "n_mel"),
    ],
)
def test_invalid_specs_are_rejected_with_the_field_named(fields, message):
    with pytest.raises(ValidationError, match=message):
        FeatureSpec(**fields)


def test_empty_audio_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        tiny_spec().extract(torch.zeros(1, 0))


def test_spec_round_trips_through_json():
    spec = tiny_spec(mel_scale="htk", mel_norm=None)
    assert FeatureSpec.model_validate_json(spec.model_dump_json()) == spec
