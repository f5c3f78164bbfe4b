"""Output encodings, checked against libsndfile and the G.711 formula."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile
import torch

from service.audio_codec import (
    encode_audio,
    mulaw_g711,
    stream_header,
    to_pcm16,
    wav_header,
)


def g711_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law expansion: |x| = ((2 * mantissa + 33) << exponent) - 33, in 14-bit units."""
    inverted = ~codes.astype(np.int32) & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(inverted & 0x80, -magnitude, magnitude)


def test_mulaw_matches_libsndfile_for_every_16_bit_sample():
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    reference = io.BytesIO()
    soundfile.write(reference, pcm, 8000, format="RAW", subtype="ULAW")
    assert np.array_equal(mulaw_g711(pcm), np.frombuffer(reference.getvalue(), np.uint8))


def test_mulaw_round_trip_error_is_within_its_step():
    pcm = np.arange(-32000, 32000, 7, dtype=np.int16)
    decoded = g711_decode(mulaw_g711(pcm))
    # Each segment doubles the step; the error stays under 1/16 of the magnitude (+ a bias).
    assert np.all(np.abs(decoded - pcm) <= np.abs(pcm.astype(np.int32)) / 16 + 16)


def test_pcm16_scaling_and_clipping():
    audio = torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0, -3.0])
    assert to_pcm16(audio).tolist() == [0, 32767, -32767, 16384, 32767, -32767]


def test_wav_and_flac_bodies_decode_to_the_same_samples():
    audio = torch.sin(torch.linspace(0, 60, 500)) * 0.8
    wav, rate = soundfile.read(io.BytesIO(encode_audio(audio, 8000, "wav")), dtype="int16")
    flac, flac_rate = soundfile.read(io.BytesIO(encode_audio(audio, 8000, "flac")), dtype="int16")
    assert rate == flac_rate == 8000
    assert np.array_equal(wav, to_pcm16(audio)) and np.array_equal(flac, wav)
    raw = np.frombuffer(encode_audio(audio, 8000, "pcm16"), dtype="<i2")
    assert np.array_equal(raw, wav)
    mulaw = np.frombuffer(encode_audio(audio, 8000, "mulaw"), dtype=np.uint8)
    assert np.abs(g711_decode(mulaw) - wav).max() <= 32768 / 64


def test_wav_headers_whole_and_open_ended():
    riff, riff_size, wave = struct.unpack("<4sI4s", wav_header(16000, 1000)[:12])
    assert (riff, riff_size, wave) == (b"RIFF", 1036, b"WAVE")
    header = stream_header(16000, "wav")
    assert len(header) == 44
    assert struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF
    assert header[36:40] == b"data" and struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF
    assert struct.unpack("<HHI", header[20:28]) == (1, 1, 16000)
    assert stream_header(16000, "pcm16") == b"" == stream_header(16000, "mulaw")
