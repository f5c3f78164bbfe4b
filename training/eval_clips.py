"""The clips `wavenet evaluate` scores: each held-out split of a prepared corpus, or a folder.

A prepared corpus gives up to two splits, each scored on its own and named in the report:
"val", held-out utterances of the speakers the model was trained on (or "train", with a
note, when the corpus holds none out), and "unseen", every utterance of the speakers kept
out of training. A folder of audio files is one split, "folder".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.dataset import crop, load_prepared
from training.dataset_format import DatasetError
from wavenet.audio import AUDIO_SUFFIXES, load_audio
from wavenet.features import FeatureSpec

__all__ = ["Clip", "load_clips", "load_splits"]


@dataclass
class Clip:
    """A held-out utterance: waveform (frames * hop,), log-mel (n_mels, frames), speaker id
    among the model's speakers (None for a speaker the model does not know)."""

    id: str
    audio: np.ndarray
    mel: torch.Tensor
    speaker: int | None
    speaker_name: str | None = None  # the corpus's name for the speaker, where it has one


def load_splits(data: Path, spec: FeatureSpec, speakers: list[str]) -> dict[str, list[Clip]]:
    """The clips of each split to score, by split name, the seen speakers' split first.

    Speakers are matched to the model's by name; unknown ones (an unseen speaker, any
    speaker of a folder) get no speaker (None).

    Raises:
        DatasetError: if `data` is neither a prepared corpus nor a folder with audio files,
            or its FeatureSpec differs from the model's.
    """
    if not (data / "manifest.jsonl").is_file():
        return {"folder": _folder_clips(data, spec)}
    corpus = load_prepared(data)
    if corpus.spec != spec:
        raise DatasetError(f"{data}: its feature spec differs from the model's")
    pools = {"val": corpus.val} if corpus.val else {"train": corpus.train}
    if corpus.unseen:
        pools["unseen"] = corpus.unseen
    splits = {}
    for split, utterances in pools.items():
        splits[split] = []
        for utterance in utterances:
            audio, mel = crop(utterance, 0, utterance.frames, spec)
            name = utterance.speaker
            speaker = speakers.index(name) if name in speakers else None
            clip = Clip(utterance.entry.id, audio, torch.from_numpy(mel), speaker, name)
            splits[split].append(clip)
    return splits


def load_clips(data: Path, spec: FeatureSpec, speakers: list[str]) -> tuple[list[Clip], str]:
    """The clips of the first split `load_splits` gives, and its name ("val", "train" or
    "folder")."""
    split, clips = next(iter(load_splits(data, spec, speakers).items()))
    return clips, split


def _folder_clips(data: Path, spec: FeatureSpec) -> list[Clip]:
    """Every audio file under `data`, zero-padded to whole hops, with no speaker."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DatasetError(f"{data}: neither a prepared corpus nor a folder of audio files")
    clips = []
    for path in files:
        audio = load_audio(path, spec.sample_rate)
        audio = F.pad(audio, (0, spec.samples_for(spec.frames_for(len(audio))) - len(audio)))
        clips.append(Clip(path.stem, audio.numpy(), spec.extract(audio), None))
    return clips
