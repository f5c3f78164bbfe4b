"""The one audio decoder (files and uploaded bytes) and resampling at bounded cost."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional as AF

from wavenet.audio import decode_audio, load_audio, resample, sinc_resample
from wavenet.errors import AudioError, InputTooLongError, UnreadableInputError


def encoded(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", None), ("OGG", None)])
def test_bytes_decode_and_resample(fmt, subtype):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000).astype(np.float32)
    audio = decode_audio(encoded(tone, 16000, fmt, subtype), sample_rate=8000, max_seconds=1.0)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert abs(audio.numel() - 800) <= 1
    assert 0.3 < audio.abs().max() <= 0.6


def test_a_file_and_its_bytes_decode_alike(tmp_path: Path):
    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(2000) / 22050).astype(np.float32)
    data = encoded(tone, 22050, subtype="PCM_16")
    (tmp_path / "a.wav").write_bytes(data)
    torch.testing.assert_close(load_audio(tmp_path / "a.wav", 16000), decode_audio(data, 16000))


def test_channels_are_mixed_to_mono():
    stereo = np.stack([np.full(100, 0.5), np.full(100, -0.1)], axis=1).astype(np.float32)
    audio = decode_audio(encoded(stereo, 8000, subtype="FLOAT"), 8000, 1.0)
    torch.testing.assert_close(audio, torch.full((100,), 0.2))


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", AudioError, "empty"),
        (b"this is not audio at all" * 10, UnreadableInputError, "not a readable"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", UnreadableInputError, "not a readable"),
        (encoded(np.zeros(0, np.float32), 8000, subtype="PCM_16"), AudioError, "no samples"),
        (encoded(np.array([0.1, np.nan], np.float32), 8000, subtype="FLOAT"), AudioError, "NaN"),
        (encoded(np.zeros(9000, np.float32), 8000, subtype="PCM_16"), InputTooLongError, "at most"),
        (encoded(np.zeros(10, np.float32), 3999, subtype="PCM_16"), AudioError, "3999 Hz"),
        (encoded(np.zeros(10, np.float32), 192001, subtype="PCM_16"), AudioError, "192001 Hz"),
    ],
)
def test_bad_audio_says_what_is_wrong(data, error, words):
    with pytest.raises(error) as raised:
        decode_audio(data, 8000, max_seconds=1.0, rates=(4000, 192000), name="the upload")
    assert words in str(raised.value) and "the upload" in str(raised.value)


def test_missing_file_names_the_path(tmp_path: Path):
    with pytest.raises(AudioError, match=r"nowhere\.wav: no such file"):
        load_audio(tmp_path / "nowhere.wav", 16000)


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (8000, 16000), (48000, 22050)])
def test_direct_sinc_resampling_equals_torchaudio(orig, new):
    audio = torch.randn(orig // 5, generator=torch.Generator().manual_seed(orig))
    expected = AF.resample(audio, orig, new)
    torch.testing.assert_close(sinc_resample(audio, orig, new), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("orig", [8001, 44101, 191999])
def test_rates_without_a_common_divisor_resample_a_tone_faithfully(orig):
    # torchaudio would build a kernel of 16000 x (orig + taps) values for these rates.
    seconds = np.arange(orig // 4) / orig
    tone = torch.from_numpy(np.sin(2 * np.pi * 500 * seconds)).float()
    audio = resample(tone, orig, 16000)
    assert audio.shape == (int(np.ceil(tone.numel() * 16000 / orig)),)
    wanted = np.sin(2 * np.pi * 500 * np.arange(audio.numel()) / 16000)
    middle = slice(100, -100)  # away from the zero padding at the ends
    assert np.abs(audio.numpy()[middle] - wanted[middle]).max() < 2e-3
