"""Training data from a prepared corpus: random segment crops on frame boundaries.

A crop of `n` frames starting at frame `f0` is `audio[f0 * hop : (f0 + n) * hop]` with
`mel[:, f0 : f0 + n]`: the mel frames were computed on the whole utterance, so each frame
keeps the context it had there. Which crop a batch slot gets is a pure function of
(seed, rank, step, slot), so a resumed run draws exactly the batches an uninterrupted one
would have, and each DDP rank draws its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.dataset_format import DatasetError, ManifestEntry, load_entry, read_manifest
from wavenet.features import FeatureSpec

__all__ = [
    "PreparedCorpus",
    "SegmentCrops",
    "StepBatches",
    "Utterance",
    "load_prepared",
    "make_loader",
    "validation_items",
]


@dataclass(frozen=True)
class Utterance:
    """One prepared utterance: its manifest entry and the folder it lives in."""

    root: Path
    entry: ManifestEntry

    @property
    def frames(self) -> int:
        """Number of mel frames."""
        return self.entry.frames

    @property
    def speaker_id(self) -> int:
        """Index of the speaker in speakers.json."""
        return self.entry.speaker_id

    def load(self, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
        """Waveform (frames * hop,) and mel (n_mels, frames), float32, memory-mapped."""
        return load_entry(self.root, self.entry, spec, mmap=True)


@dataclass(frozen=True)
class PreparedCorpus:
    """A folder written by `wavenet prepare`: feature spec, speakers and split utterances."""

    root: Path
    spec: FeatureSpec
    speakers: list[str]
    train: list[Utterance]
    val: list[Utterance]


def load_prepared(root: str | Path) -> PreparedCorpus:
    """Read a prepared corpus's feature spec, speaker list and manifest.

    Raises:
        DatasetError: if the folder is not a complete prepared corpus or has no training
            utterances.
    """
    root = Path(root)
    spec, speakers, entries = read_manifest(root)
    train = [Utterance(root, entry) for entry in entries if entry.split == "train"]
    val = [Utterance(root, entry) for entry in entries if entry.split == "val"]
    if not train:
        raise DatasetError(f"{root / 'manifest.jsonl'}: no training utterances")
    return PreparedCorpus(root, spec, speakers, train, val)


def crop(
    utterance: Utterance, start_frame: int, frames: int, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Frames [start_frame, start_frame + frames) of an utterance, padded past its end.

    Padding is silence: zeros in the waveform and the log floor in the mel, which is what
    the feature extractor gives for zeros.

    Returns:
        tuple: Waveform (frames * hop,) and mel (n_mels, frames), float32.
    """
    audio, mel = utterance.load(spec)
    hop = spec.hop_length
    stop_frame = min(start_frame + frames, utterance.frames)
    audio_out = np.zeros(frames * hop, dtype=np.float32)
    mel_out = np.full((spec.n_mels, frames), math.log(spec.log_floor), dtype=np.float32)
    audio_out[: (stop_frame - start_frame) * hop] = audio[start_frame * hop : stop_frame * hop]
    mel_out[:, : stop_frame - start_frame] = mel[:, start_frame:stop_frame]
    return audio_out, mel_out


class SegmentCrops(Dataset):
    """Random fixed-length crops, keyed by (step, slot).

    Utterances are drawn in proportion to their length, so every second of audio is equally
    likely to be seen; the start frame is uniform over the positions where the crop fits.

    Args:
        utterances (list[Utterance]): The pool to draw from.
        spec (FeatureSpec): The corpus's feature spec (hop, n_mels, log floor).
        segment_frames (int): Frames per crop; the waveform has segment_frames * hop samples.
        seed (int): Run seed.
        rank (int): This process's rank, so DDP ranks draw different crops.
    """

    def __init__(
        self, utterances: list[Utterance], spec: FeatureSpec, segment_frames: int, seed: int, rank=0
    ):
        self.utterances = utterances
        self.spec = spec
        self.segment_frames = segment_frames
        self.seed = seed
        self.rank = rank
        lengths = np.array([u.frames for u in utterances], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def draw(self, step: int, slot: int) -> tuple[Utterance, int]:
        """The utterance and start frame of batch slot `slot` at `step`."""
        rng = np.random.default_rng([self.seed, self.rank, step, slot])
        utterance = self.utterances[rng.choice(len(self.utterances), p=self.weights)]
        start = int(rng.integers(0, max(utterance.frames - self.segment_frames, 0) + 1))
        return utterance, start

    def item(self, utterance: Utterance, start: int) -> dict[str, np.ndarray | int]:
        """The crop of `utterance` from frame `start`; subclasses add per-frame labels."""
        audio, mel = crop(utterance, start, self.segment_frames, self.spec)
        return {"audio": audio, "mel": mel, "speaker": utterance.speaker_id}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray | int]:
        return self.item(*self.draw(*key))


class StepBatches(Sampler):
    """Batch keys for steps [start_step, stop_step): step s gives [(s, 0), ..., (s, B-1)]."""

    def __init__(self, start_step: int, stop_step: int, batch_size: int):
        self.start_step, self.stop_step, self.batch_size = start_step, stop_step, batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.stop_step):
            yield [(step, slot) for slot in range(self.batch_size)]

    def __len__(self) -> int:
        return max(self.stop_step - self.start_step, 0)


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack crops: audio (B, T), mel (B, n_mels, F), speaker (B,), and any other array
    field (e.g. per-frame labels (B, F)) stacked along a new batch axis."""
    batch = {"speaker": torch.tensor([item["speaker"] for item in items], dtype=torch.long)}
    for name in items[0]:
        if name != "speaker":
            batch[name] = torch.from_numpy(np.stack([item[name] for item in items]))
    return batch


def make_loader(
    crops: SegmentCrops, start_step: int, stop_step: int, batch_size: int, num_workers: int
) -> DataLoader:
    """One batch per training step from `start_step` up to (not including) `stop_step`."""
    return DataLoader(
        crops,
        batch_sampler=StepBatches(start_step, stop_step, batch_size),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def validation_items(
    corpus: PreparedCorpus, count: int, frames: int
) -> list[dict[str, torch.Tensor]]:
    """A fixed held-out set: the first `frames` frames of the first `count` val utterances.

    Falls back to training utterances when the corpus has no held-out split. Each item is a
    batch of one (audio (1, T), mel (1, n_mels, F), speaker (1,)), unpadded.
    """
    pool = corpus.val or corpus.train
    items = []
    for utterance in pool[:count]:
        length = min(frames, utterance.frames)
        audio, mel = crop(utterance, 0, length, corpus.spec)
        items.append(collate([{"audio": audio, "mel": mel, "speaker": utterance.speaker_id}]))
    return items
