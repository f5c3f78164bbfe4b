"""The clips `wavenet evaluate` scores: each held-out split of a prepared corpus, or a folder.

A prepared corpus gives up to two splits, each scored on its own and named in the report:
"val", held-out utterances of the speakers the model was trained on (or "train", with a
note, when the corpus holds none out), and "unseen", every utterance of the speakers kept
out of training. A folder of audio files is one split, "folder".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.dataset import crop, load_prepared, speaker_turns
from training.dataset_format import DatasetError
from wavenet.audio import AUDIO_SUFFIXES, load_audio
from wavenet.excitation import initial_phase
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, check_pitch_spec, track_f0

__all__ = ["Clip", "clip_phase", "load_clips", "load_splits"]


def clip_phase(clip_id: str) -> float:
    """phi_0 of a clip's excitation, radians in [0, 2 pi): drawn from a generator seeded with
    the CRC-32 of the clip's id, so it does not depend on which clips are scored with it."""
    generator = torch.Generator().manual_seed(zlib.crc32(clip_id.encode()))
    return float(initial_phase(1, generator)[0])


@dataclass
class Clip:
    """A held-out utterance: waveform (frames * hop,), log-mel (n_mels, frames), speaker id
    among the model's speakers (None for a speaker the model does not know), and the
    tracker's F0 (frames,) in Hz, 0 = unvoiced (None where the corpus has no F0)."""

    id: str
    audio: np.ndarray
    mel: torch.Tensor
    speaker: int | None
    speaker_name: str | None = None  # the corpus's name for the speaker, where it has one
    f0: np.ndarray | None = None

    @property
    def phase(self) -> float:
        """The initial phase of the clip's excitation (`clip_phase`)."""
        return clip_phase(self.id)


def load_splits(
    data: Path, spec: FeatureSpec, speakers: list[str], pitch: PitchSpec | None = None
) -> dict[str, list[Clip]]:
    """The clips of each split to score, by split name, the seen speakers' split first.

    Speakers are matched to the model's by name; unknown ones (an unseen speaker, any
    speaker of a folder) get no speaker (None). A prepared corpus's clips carry its cached
    F0 (if it has any); a folder's clips carry the F0 the tracker finds here.

    Args:
        pitch (PitchSpec | None): The tracker settings the model expects its F0 from: a
            prepared corpus must have been tracked with them, a folder is tracked with them;
            None: the corpus's F0 as it is, a folder tracked with PitchSpec's defaults.

    Raises:
        DatasetError: if `data` is neither a prepared corpus nor a folder with audio files,
            or its FeatureSpec differs from the model's.
        PitchSpecError: if `pitch` is given and the corpus has no F0 or other settings.
    """
    if not (data / "manifest.jsonl").is_file():
        return {"folder": _folder_clips(data, spec, pitch)}
    corpus = load_prepared(data)
    if corpus.spec != spec:
        raise DatasetError(f"{data}: its feature spec differs from the model's")
    if pitch is not None:
        check_pitch_spec(pitch, corpus.pitch, "the model (config.pitch)", str(data))
    pools = {"val": corpus.val} if corpus.val else {"train": corpus.train}
    if corpus.unseen:
        pools["unseen"] = corpus.unseen
    splits = {}
    for split, utterances in pools.items():
        splits[split] = []
        for utterance in speaker_turns(utterances):
            audio, mel = crop(utterance, 0, utterance.frames, spec)
            name = utterance.speaker
            speaker = speakers.index(name) if name in speakers else None
            f0 = np.array(utterance.load_f0()) if utterance.has_f0 else None
            clip = Clip(utterance.entry.id, audio, torch.from_numpy(mel), speaker, name, f0)
            splits[split].append(clip)
    return splits


def load_clips(
    data: Path, spec: FeatureSpec, speakers: list[str], pitch: PitchSpec | None = None
) -> tuple[list[Clip], str]:
    """The clips of the first split `load_splits` gives, and its name ("val", "train" or
    "folder")."""
    split, clips = next(iter(load_splits(data, spec, speakers, pitch).items()))
    return clips, split


def _folder_clips(data: Path, spec: FeatureSpec, pitch: PitchSpec | None) -> list[Clip]:
    """Every audio file under `data`, zero-padded to whole hops, with no speaker, and the F0
    the tracker finds with `pitch` (None: its defaults)."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DatasetError(f"{data}: neither a prepared corpus nor a folder of audio files")
    clips = []
    for path in files:
        audio = load_audio(path, spec.sample_rate)
        audio = F.pad(audio, (0, spec.samples_for(spec.frames_for(len(audio))) - len(audio)))
        f0 = track_f0(audio.numpy(), spec, pitch)
        clips.append(Clip(path.stem, audio.numpy(), spec.extract(audio), None, None, f0))
    return clips
