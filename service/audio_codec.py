"""Audio out of the service: the output formats and their (streaming) encoders.

Uploads are decoded by `wavenet.audio.decode_audio`, with the service's limits.

Output formats (mono, at the model's sample rate):
- wav: RIFF/WAVE, 16-bit PCM. Streamed, its RIFF and data sizes are 0xFFFFFFFF ("unknown").
- pcm16: raw 16-bit signed little-endian samples, no header.
- mulaw: raw 8-bit G.711 mu-law (audio/basic), no header.
- flac: 16-bit FLAC (whole responses only: its header holds the total length).
"""

from __future__ import annotations

import io
import struct
from typing import Literal, get_args

import numpy as np
import soundfile
import torch

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "STREAMABLE_FORMATS",
    "AudioFormat",
    "encode_audio",
    "encode_samples",
    "mulaw_g711",
    "stream_header",
    "to_pcm16",
    "wav_header",
]

AudioFormat = Literal["wav", "pcm16", "mulaw", "flac"]
FORMATS: tuple[str, ...] = get_args(AudioFormat)
STREAMABLE_FORMATS = ("wav", "pcm16", "mulaw")
MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm16": "audio/pcm",
    "mulaw": "audio/basic",
    "flac": "audio/flac",
}
# WAV sizes for a stream whose length is not known when the header is sent.
UNKNOWN_SIZE = 0xFFFFFFFF
# G.711: samples are biased by 0x84 before the segment is found, and clipped so the bias fits.
MULAW_BIAS = 0x84
MULAW_CLIP = 32635


def to_pcm16(audio: torch.Tensor) -> np.ndarray:
    """Audio (samples,) in [-1, 1] to int16 samples: round(x * 32767), clipped."""
    samples = audio.detach().float().cpu().clamp(-1.0, 1.0).numpy()
    return np.round(samples * 32767.0).astype(np.int16)


def mulaw_g711(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM samples to 8-bit G.711 mu-law codes (uint8), as telephony codecs do.

    code = ~(sign | exponent << 4 | mantissa), where the magnitude plus 0x84 is
    1 mmmm xxx... with its leading one at bit 7 + exponent.
    """
    values = pcm.astype(np.int32)
    sign = np.where(values < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(values), MULAW_CLIP) + MULAW_BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte header for mono 16-bit PCM; `data_bytes` None for an open-ended stream."""
    data_size = UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff_size = UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    channels, bits = 1, 16
    block_align = channels * bits // 8
    return (
        struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE")
        + struct.pack(
            "<4sIHHIIHH",
            b"fmt ",
            16,
            1,  # PCM
            channels,
            sample_rate,
            sample_rate * block_align,
            block_align,
            bits,
        )
        + struct.pack("<4sI", b"data", data_size)
    )


def encode_samples(audio: torch.Tensor, fmt: AudioFormat) -> bytes:
    """The sample bytes of one chunk (samples,) in a streamable format, without any header."""
    pcm = to_pcm16(audio)
    if fmt == "mulaw":
        return mulaw_g711(pcm).tobytes()
    return pcm.astype("<i2").tobytes()


def encode_audio(audio: torch.Tensor, sample_rate: int, fmt: AudioFormat) -> bytes:
    """A whole response body: audio (samples,) in [-1, 1] encoded as `fmt`."""
    if fmt == "flac":
        buffer = io.BytesIO()
        soundfile.write(buffer, to_pcm16(audio), sample_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue()
    samples = encode_samples(audio, fmt)
    if fmt == "wav":
        return wav_header(sample_rate, len(samples)) + samples
    return samples


def stream_header(sample_rate: int, fmt: AudioFormat) -> bytes:
    """What a stream in `fmt` starts with before its first samples."""
    return wav_header(sample_rate, None) if fmt == "wav" else b""
