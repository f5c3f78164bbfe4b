"""Reading and writing audio (wav, flac, ogg) with soundfile, and resampling at bounded cost.

`decode_audio` is the one decoder: files for the offline commands, uploaded bytes for the
service, which passes its limits (longest duration, accepted sample rates) as arguments so
that every cost is bounded before it is paid.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from wavenet.errors import AudioError, InputTooLongError, UnreadableInputError
from wavenet.inputs import open_source

__all__ = ["AUDIO_SUFFIXES", "decode_audio", "load_audio", "resample", "save_audio"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# Samples (frames x channels) read and mixed down at a time, so a file with many channels
# never holds more than this many floats beside its mono result.
READ_BLOCK_SAMPLES = 1 << 20
# torchaudio's resampler builds one kernel of new' x (orig' + 2 width) values for the rates
# reduced by their gcd (e.g. 160 x 453 for 44.1 kHz to 16 kHz, but 16000 x 8041 for 8001 Hz):
# past this many values the direct form below, whose cost does not depend on the gcd, is used.
MAX_POLYPHASE_KERNEL = 1 << 20
# The windowed sinc of torchaudio's default resampling: zero crossings each side, and rolloff.
LOWPASS_ZERO_CROSSINGS = 6
ROLLOFF = 0.99
# Output samples x taps computed at a time by the direct form.
RESAMPLE_BLOCK = 1 << 20


def decode_audio(
    source: str | Path | bytes,
    sample_rate: int,
    max_seconds: float | None = None,
    rates: tuple[int, int] | None = None,
    name: str | None = None,
) -> torch.Tensor:
    """Read a wav/flac/ogg file (a path, or its bytes) as mono float32 at `sample_rate`.

    The header is checked against the limits before any sample is decoded; channels are
    mixed down block by block, and the resampling cost grows with the duration only.

    Args:
        source (str | Path | bytes): The file, or its contents.
        sample_rate (int): Rate to resample to.
        max_seconds (float | None): Longest audio accepted; None for no limit.
        rates (tuple[int, int] | None): Lowest and highest sample rate accepted, in Hz.
        name (str | None): What to call the file in messages; the path by default.

    Returns:
        Tensor: Waveform (samples,) in [-1, 1].

    Raises:
        UnreadableInputError: not a readable audio file. InputTooLongError: longer than
            max_seconds. AudioError: empty, missing, a rate outside `rates`, no samples,
            NaN or Inf.
    """
    name, readable = open_source(source, name, "the audio")
    try:
        with soundfile.SoundFile(readable) as sound:
            _check_header(sound, max_seconds, rates, name)
            samples, rate = _read_mono(sound), sound.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise UnreadableInputError(
            f"{name}: not a readable wav, flac or ogg file ({_reason(error)})"
        ) from None
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: contains no samples")
    audio = torch.from_numpy(samples)
    if not torch.isfinite(audio).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return resample(audio, rate, sample_rate).clamp(-1.0, 1.0)


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as mono float32 (samples,) in [-1, 1] at `sample_rate`.

    Raises:
        AudioError: naming the file, if it is missing, unreadable or empty.
    """
    return decode_audio(Path(path), sample_rate)


def _check_header(
    sound: soundfile.SoundFile,
    max_seconds: float | None,
    rates: tuple[int, int] | None,
    name: str,
) -> None:
    if rates is not None and not rates[0] <= sound.samplerate <= rates[1]:
        raise AudioError(
            f"{name}: sample rate {sound.samplerate} Hz is not accepted; "
            f"send {rates[0]} to {rates[1]} Hz"
        )
    seconds = sound.frames / sound.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise InputTooLongError(
            f"{name}: lasts {seconds:.2f} s; at most {max_seconds:.2f} s allowed"
        )


def _read_mono(sound: soundfile.SoundFile) -> np.ndarray:
    """All frames of `sound` as float32 (frames,), the mean of its channels."""
    block = max(1, READ_BLOCK_SAMPLES // sound.channels)
    parts = []
    while (data := sound.read(block, dtype="float32", always_2d=True)).shape[0] > 0:
        parts.append(data.mean(axis=1, dtype=np.float32))
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, np.float32))


def resample(audio: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Audio (samples,) from `orig_rate` to `new_rate` Hz with a Hann-windowed sinc.

    torchaudio's polyphase form where its kernel is small (common rate pairs), otherwise
    `sinc_resample`, the same filter evaluated sample by sample.
    """
    if orig_rate == new_rate:
        return audio
    divisor = math.gcd(orig_rate, new_rate)
    reduced_orig, reduced_new = orig_rate // divisor, new_rate // divisor
    cutoff = min(reduced_orig, reduced_new) * ROLLOFF
    width = math.ceil(LOWPASS_ZERO_CROSSINGS * reduced_orig / cutoff)
    if reduced_new * (reduced_orig + 2 * width) <= MAX_POLYPHASE_KERNEL:
        return AF.resample(audio, orig_rate, new_rate)
    return sinc_resample(audio, orig_rate, new_rate)


def sinc_resample(audio: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling at a cost of O(output samples x taps) for any pair of rates.

    Output sample j sits at input position p_j = j * orig / new; with b = min(orig, new) * 0.99
    and a = (i - p_j) * b / orig for input sample i,

        y_j = sum_i x_i * (b / orig) * sinc(a) * cos^2(pi a / 12),   |a| <= 6,

    torchaudio's `sinc_interp_hann` filter (6 zero crossings each side), zeros beyond the ends.

        x:    |  pad  | x_0 x_1 ... x_{n-1} |  pad  |
        y_j:            [p_j - taps ... p_j + taps]   floor(p_j) = (j * orig) // new

    Args:
        audio (Tensor): Waveform (samples,).
        orig_rate (int): Its sample rate.
        new_rate (int): The rate wanted.

    Returns:
        Tensor: Waveform (ceil(samples * new / orig),).
    """
    cutoff = min(orig_rate, new_rate) * ROLLOFF
    taps = math.ceil(LOWPASS_ZERO_CROSSINGS * orig_rate / cutoff)
    length = audio.shape[-1]
    out_length = math.ceil(length * new_rate / orig_rate)
    padded = torch.nn.functional.pad(audio.float(), (taps, taps + 1))
    offsets = torch.arange(-taps, taps + 1)
    out = torch.empty(out_length)
    block = max(1, RESAMPLE_BLOCK // offsets.numel())
    for start in range(0, out_length, block):
        positions = torch.arange(start, min(start + block, out_length), dtype=torch.int64)
        left = positions * orig_rate // new_rate
        fraction = (positions * orig_rate % new_rate).double() / new_rate
        # The phase is at most +-6: float32 holds it to 1e-6 once the fraction is taken.
        phase = ((offsets[None] - fraction[:, None]) * (cutoff / orig_rate)).float()
        phase = phase.clamp_(-LOWPASS_ZERO_CROSSINGS, LOWPASS_ZERO_CROSSINGS)
        window = torch.cos(phase * (math.pi / (2 * LOWPASS_ZERO_CROSSINGS))).square_()
        kernel = torch.sinc(phase).mul_(window).mul_(cutoff / orig_rate)
        neighbours = padded[left[:, None] + taps + offsets[None]]
        out[start : start + positions.shape[0]] = (neighbours * kernel).sum(-1)
    return out


def save_audio(path: str | Path, audio: torch.Tensor, sample_rate: int) -> None:
    """Write mono audio (samples,) in [-1, 1] as 16-bit PCM, atomically (temp file + rename).

    The format follows the suffix (.wav, .flac, .ogg).
    """
    path = Path(path)
    samples = audio.detach().float().clamp(-1.0, 1.0).cpu().numpy()
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        subtype = "PCM_16" if path.suffix.lower() in (".wav", ".flac") else None
        soundfile.write(temp, samples, sample_rate, subtype=subtype)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _reason(error: Exception) -> str:
    """libsndfile's own words, without the stream's repr that str(error) starts with."""
    return getattr(error, "error_string", None) or type(error).__name__
