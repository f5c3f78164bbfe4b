"""Cleaning one utterance's audio before it is cached: silence trimming and level.

Silence (`trim_silence`): the audio is cut into 10 ms blocks; a block whose RMS is more than
`silence_db` (default 40 dB) below the loudest block's is silent. Leading and trailing silence
is cut to `edge_silence_seconds` (0.1 s); an internal run of silent blocks longer than
`max_pause_seconds` (0.5 s) keeps its first and last halves of that length.

Level (`normalise_level`): "peak" scales the loudest sample to `peak_dbfs` (-1 dBFS); "rms"
scales the RMS of the trimmed audio to `rms_dbfs` (-20 dBFS) but never lets a sample exceed
`peak_dbfs`; "none" leaves the level alone.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BLOCK_SECONDS", "normalise_level", "trim_silence"]

BLOCK_SECONDS = 0.01  # silence is judged per 10 ms block: short enough to keep word onsets


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    silence_db: float,
    edge_seconds: float,
    pause_seconds: float,
) -> np.ndarray:
    """Cut leading/trailing silence to `edge_seconds` and internal pauses to `pause_seconds`.

    Args:
        audio (ndarray): Waveform (samples,).

    Returns:
        ndarray: The trimmed waveform (kept samples,); empty when the audio is all zeros.
    """
    block = max(1, round(BLOCK_SECONDS * sample_rate))
    blocks = math.ceil(audio.size / block)
    padded = np.pad(audio, (0, blocks * block - audio.size)).reshape(blocks, block)
    rms = np.sqrt(np.mean(padded.astype(np.float64) ** 2, axis=1))
    if rms.max() == 0:
        return audio[:0]
    silent = rms < rms.max() * 10 ** (silence_db / 20)
    voiced = np.flatnonzero(~silent)
    edge, pause = round(edge_seconds / BLOCK_SECONDS), round(pause_seconds / BLOCK_SECONDS)
    keep = np.zeros(blocks, dtype=bool)
    keep[max(0, voiced[0] - edge) : voiced[-1] + 1 + edge] = True
    # Each gap between consecutive voiced blocks is an internal pause.
    for start, end in zip(voiced[:-1] + 1, voiced[1:], strict=True):
        if end - start > pause:
            keep[start + pause // 2 : end - (pause - pause // 2)] = False
    return audio[np.repeat(keep, block)[: audio.size]]


def normalise_level(audio: np.ndarray, level: str, peak_dbfs: float, rms_dbfs: float) -> np.ndarray:
    """Scale `audio` (samples,) to a common level (see the module docstring)."""
    peak = float(np.abs(audio).max())
    if level == "none" or peak == 0:
        return audio
    ceiling = 10 ** (peak_dbfs / 20)
    gain = ceiling / peak
    if level == "rms":
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        gain = min(gain, 10 ** (rms_dbfs / 20) / rms)
    return (audio * gain).astype(np.float32)
