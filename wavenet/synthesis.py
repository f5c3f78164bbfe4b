"""Offline synthesis: files in (audio for copy synthesis, or .npy mels), wav files out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from wavenet.audio import AUDIO_SUFFIXES, load_audio, save_audio
from wavenet.errors import AudioError
from wavenet.features import FeatureSpec
from wavenet.inputs import read_npy_mel

__all__ = ["INPUT_SUFFIXES", "Job", "load_mel", "plan_jobs", "run_jobs"]

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
    path = Path(path)
    if path.suffix.lower() != ".npy":
        return spec.extract(load_audio(path, spec.sample_rate))
    return read_npy_mel(path, spec.n_mels)


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
) -> None:
    """Synthesise every job. All inputs are read and checked before anything is written."""
    device = next(model.parameters()).device
    mels = [load_mel(job.source, model.spec) for job in jobs]
    speakers = None if speaker is None else torch.tensor([speaker], device=device)
    for job, mel in tqdm(list(zip(jobs, mels, strict=True)), disable=not progress, unit="file"):
        audio = model.generate(mel.unsqueeze(0).to(device), speakers, temperature=temperature)
        job.target.parent.mkdir(parents=True, exist_ok=True)
        save_audio(job.target, audio[0], model.spec.sample_rate)
