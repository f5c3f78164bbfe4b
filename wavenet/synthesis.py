"""Offline synthesis: files in (audio for copy synthesis, or .npy mels), wav files out.

A pitch-aware model gets F0 as the service gives it (`wavenet.synthesis_f0`): tracked from an
audio input, read from a .npy F0 file given with a .npy mel, or predicted from the mel by the
pitch predictor; then shifted by `pitch_shift` semitones. The excitation starts at phase 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wavenet.audio import AUDIO_SUFFIXES, load_audio, save_audio
from wavenet.errors import AudioError
from wavenet.features import FeatureSpec
from wavenet.inputs import open_source, read_npy_mel
from wavenet.synthesis_f0 import SynthesisF0

__all__ = ["INPUT_SUFFIXES", "Job", "load_input", "load_mel", "plan_jobs", "read_f0", "run_jobs"]

INPUT_SUFFIXES = (*AUDIO_SUFFIXES, ".npy")


@dataclass
class Job:
    """One input file and the wav file it becomes."""

    source: Path
    target: Path


def load_mel(path: str | Path, spec: FeatureSpec) -> torch.Tensor:
    """Conditioning for one file: a .npy mel (n_mels, frames), or the features of an audio file.

    Raises:
        AudioError: naming the file and what is wrong with it.
    """
    return load_input(path, spec)[0]


def load_input(path: str | Path, spec: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One input file's mel (n_mels, frames), and its audio (samples,) when it is audio (None
    for a .npy mel).

    Raises:
        AudioError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        audio = load_audio(path, spec.sample_rate)
        return spec.extract(audio), audio
    return read_npy_mel(path, spec.n_mels), None


def read_f0(path: str | Path, frames: int, pitch: SynthesisF0) -> torch.Tensor:
    """An F0 track (frames,) in Hz, 0 = unvoiced, from a .npy file of one value per frame.

    Raises:
        AudioError: naming the file: unreadable, not 1-D floats, the wrong number of frames,
            NaN or Inf, negative, or above the model's f0_max.
    """
    name, readable = open_source(path, None, "the F0 file")
    try:
        array = np.load(readable, allow_pickle=False)
    except Exception as error:  # numpy raises several types for damaged files
        raise AudioError(f"{name}: not a readable .npy array ({error})") from None
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise AudioError(f"{name}: F0 must be numbers (Hz per frame), got {array.dtype}")
    return pitch.check(torch.from_numpy(np.asarray(array, dtype=np.float32)), frames, name)


def plan_jobs(source: str | Path, target: str | Path) -> list[Job]:
    """Pair inputs with outputs: a file gives one job, a folder one job per input file in it.

    A folder's files keep their relative paths, with the suffix replaced by `.wav`.
    """
    source, target = Path(source), Path(target)
    if source.is_file():
        if target.is_dir():
            target = target / f"{source.stem}.wav"
        return [Job(source, target)]
    if not source.is_dir():
        raise AudioError(f"{source}: no such file or folder")
    if target.exists() and not target.is_dir():
        raise AudioError(f"{target}: the input is a folder, so --out must be a folder")
    files = sorted(
        p for p in source.rglob("*") if p.suffix.lower() in INPUT_SUFFIXES and p.is_file()
    )
    if not files:
        raise AudioError(f"{source}: no {', '.join(INPUT_SUFFIXES)} files in this folder")
    jobs = [Job(p, (target / p.relative_to(source)).with_suffix(".wav")) for p in files]
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.target in seen:
            raise AudioError(f"{job.source} and {seen[job.target]} would both write {job.target}")
        seen[job.target] = job.source
    return jobs


def run_jobs(
    model: nn.Module,
    jobs: list[Job],
    speaker: int | None = None,
    temperature: float = 1.0,
    progress: bool = True,
    pitch: SynthesisF0 | None = None,
    f0_file: str | Path | None = None,
    pitch_shift: float = 0.0,
) -> None:
    """Synthesise every job. All inputs (and their F0) are read and checked before anything
    is written.

    Args:
        model (nn.Module): The vocoder.
        jobs (list[Job]): Inputs and outputs.
        speaker (int | None): Speaker id.
        temperature (float): Sampling temperature.
        progress (bool): Show a progress bar.
        pitch (SynthesisF0 | None): F0 handling of a pitch-aware model (None: mel-only);
            with a predictor when a .npy mel is given without `f0_file`.
        f0_file (str | Path | None): F0 of the one .npy mel input.
        pitch_shift (float): Semitones to shift F0 by.
    """
    device = next(model.parameters()).device
    inputs = [load_input(job.source, model.spec) for job in jobs]
    f0s = [_input_f0(mel, audio, pitch, f0_file) for mel, audio in inputs]
    speakers = None if speaker is None else torch.tensor([speaker], device=device)
    work = list(zip(jobs, inputs, f0s, strict=True))
    for job, (mel, _), f0 in tqdm(work, disable=not progress, unit="file"):
        options = {}
        if f0 is not None:
            options["f0"] = pitch.shifted(f0, pitch_shift).unsqueeze(0).to(device)
            mel = pitch.mel_for(mel, pitch_shift)
            options |= pitch.shift_options(model, [pitch_shift], device)
        audio = model.generate(
            mel.unsqueeze(0).to(device), speakers, temperature=temperature, **options
        )
        job.target.parent.mkdir(parents=True, exist_ok=True)
        save_audio(job.target, audio[0], model.spec.sample_rate)


def _input_f0(
    mel: torch.Tensor,
    audio: torch.Tensor | None,
    pitch: SynthesisF0 | None,
    f0_file: str | Path | None,
) -> torch.Tensor | None:
    """An input's F0 before the shift: tracked from audio, read from `f0_file`, or predicted."""
    if pitch is None:
        return None
    if audio is not None:
        return pitch.track(audio)
    if f0_file is not None:
        return read_f0(f0_file, mel.shape[-1], pitch)
    return pitch.predict(mel).cpu()
