"""Turning an installed recording into corpus audio: decoding, resampling, cutting, writing.

G.722 (Asterisk's prompts) is decoded with the `G722` package, Ogg (KLettres) with soundfile;
both come out mono at the corpus's sample rate. A recording that is silent once decoded is
skipped; one longer than `MAX_CLIP_SECONDS` is cut at its pauses, since `wavenet prepare`
drops clips over 20 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from training.corpus_summary import Clip, CorpusError, CorpusSummary
from training.recorded import RecordedClip
from wavenet.audio import load_audio, save_audio
from wavenet.errors import AudioError

__all__ = ["decode_g722", "load_clip", "split_at_pauses", "write_recording"]

G722_RATE = 16000  # Hz
MAX_CLIP_SECONDS = 15.0  # longer recordings are cut at pauses (prepare drops clips over 20 s)
SILENT_PEAK_DBFS = -50.0  # a decoded recording whose peak is lower holds no speech


def write_recording(
    clip: RecordedClip, out: Path, sample_rate: int, summary: CorpusSummary
) -> None:
    """Decode one recording and write it (in pieces when long) as wav, with its transcript."""
    try:
        audio = load_clip(clip, sample_rate)
    except (AudioError, OSError) as error:
        summary.skip(clip.source, str(clip.path), f"unreadable: {error}")
        return
    peak = float(np.abs(audio).max(initial=0.0))
    if peak < 10 ** (SILENT_PEAK_DBFS / 20):
        summary.skip(clip.source, str(clip.path), f"silent (peak below {SILENT_PEAK_DBFS} dBFS)")
        return
    pieces = split_at_pauses(audio, sample_rate, MAX_CLIP_SECONDS)
    (out / clip.speaker).mkdir(exist_ok=True)
    for number, piece in enumerate(pieces, 1):
        utt_id = clip.utt_id if len(pieces) == 1 else f"{clip.utt_id}_part{number}"
        text = clip.text if len(pieces) == 1 else ""  # a transcript cannot be cut with it
        save_audio(out / clip.speaker / f"{utt_id}.wav", torch.from_numpy(piece), sample_rate)
        if text:
            (out / clip.speaker / f"{utt_id}.txt").write_text(text + "\n", encoding="utf-8")
        seconds = round(piece.size / sample_rate, 3)
        path = f"{clip.speaker}/{utt_id}.wav"
        summary.rows.append(
            Clip(path, clip.speaker, text, seconds, clip.source, clip.language, clip.licence)
        )


def decode_g722(data: bytes) -> np.ndarray:
    """G.722 at 64 kbit/s (one byte per two samples) -> float32 samples at 16 kHz in [-1, 1)."""
    try:
        import G722
    except ImportError:
        raise CorpusError("decoding G.722 needs the G722 package (pip install G722)") from None
    samples = np.frombuffer(G722.G722(G722_RATE, 64000).decode(data), dtype=np.int16)
    return samples.astype(np.float32) / 32768.0


def load_clip(clip: RecordedClip, sample_rate: int) -> np.ndarray:
    """The clip as mono float32 samples (samples,) at `sample_rate`."""
    if clip.path.suffix != ".g722":
        return load_audio(clip.path, sample_rate).numpy()
    audio = decode_g722(clip.path.read_bytes())
    if sample_rate != G722_RATE:
        audio = AF.resample(torch.from_numpy(audio), G722_RATE, sample_rate).numpy()
    return audio


def split_at_pauses(audio: np.ndarray, sample_rate: int, max_seconds: float) -> list[np.ndarray]:
    """Cut audio longer than `max_seconds` at its quietest moments into pieces that fit.

    The cut falls in the middle of the quietest 50 ms window of the clip's middle half, and each
    part is cut again while it is too long, so no piece is shorter than a quarter of its parent:

        0          T/4                                3T/4           T
        |-----------|----------------------------------|-------------|
                    |  the quietest 50 ms window here  |
                               [-- ^ --]  cut at its centre

    Args:
        audio (ndarray): Waveform (samples,).

    Returns:
        list[ndarray]: Consecutive pieces (samples_i,) whose concatenation is `audio`.
    """
    if audio.size <= max_seconds * sample_rate:
        return [audio]
    window = max(1, round(0.05 * sample_rate))
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    power = energy[window:] - energy[:-window]  # power[i]: energy of audio[i : i + window]
    low, high = audio.size // 4, max(audio.size // 4 + 1, 3 * audio.size // 4 - window)
    cut = low + int(np.argmin(power[low:high])) + window // 2
    return split_at_pauses(audio[:cut], sample_rate, max_seconds) + split_at_pauses(
        audio[cut:], sample_rate, max_seconds
    )
