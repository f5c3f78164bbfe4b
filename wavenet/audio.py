"""Reading and writing audio files (wav, flac, ogg) with soundfile, resampling with torchaudio."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from wavenet.errors import AudioError

__all__ = ["AUDIO_SUFFIXES", "load_audio", "save_audio"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read an audio file as mono float32 at `sample_rate`.

    Returns:
        Tensor: Waveform (samples,) in [-1, 1].

    Raises:
        AudioError: naming the file, if it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile reports every format problem as one error type
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    audio = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if not torch.isfinite(audio).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        audio = AF.resample(audio, rate, sample_rate)
    return audio.clamp(-1.0, 1.0)


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


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
