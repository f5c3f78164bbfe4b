"""Training data from a prepared corpus: random segment crops on frame boundaries.

A crop of `n` frames starting at frame `s` is `audio[s * hop : (s + n) * hop]` with
`mel[:, s : s + n]` (and `f0[s : s + n]` when the corpus has F0): the mel frames were
computed on the whole utterance, so each frame keeps the context it had there. Training
draws from the "train" split only; "val" and "unseen" are for scoring. Which crop a batch
slot gets is a pure function of (seed, rank, step, slot), so a resumed run draws exactly the
batches an uninterrupted one would have, and each DDP rank draws its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.dataset_format import (
    DatasetError,
    ManifestEntry,
    load_entry,
    load_f0,
    read_manifest,
    read_pitch_spec,
)
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec

__all__ = [
    "PreparedCorpus",
    "SegmentCrops",
    "StepBatches",
    "Utterance",
    "crop",
    "crop_f0",
    "crop_item",
    "load_prepared",
    "make_loader",
    "speaker_turns",
    "validation_items",
    "validation_utterances",
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
    def speaker(self) -> str:
        """Speaker name (an unseen speaker has a name but no id)."""
        return self.entry.speaker

    @property
    def speaker_id(self) -> int | None:
        """Index of the speaker in speakers.json; None for an unseen speaker."""
        return self.entry.speaker_id

    @property
    def has_f0(self) -> bool:
        """Whether the utterance was prepared with F0."""
        return self.entry.f0 is not None

    def load(self, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
        """Waveform (frames * hop,) and mel (n_mels, frames), float32, memory-mapped."""
        return load_entry(self.root, self.entry, spec, mmap=True)

    def load_f0(self) -> np.ndarray:
        """F0 (frames,) in Hz, float32, 0 where unvoiced, memory-mapped.

        Raises:
            DatasetError: if the corpus was prepared without F0.
        """
        return load_f0(self.root, self.entry, mmap=True)


@dataclass(frozen=True)
class PreparedCorpus:
    """A folder written by `wavenet prepare`: feature spec, speakers and split utterances.

    Attributes:
        speakers: The training speakers (index = speaker id), those a model learns.
        train: The only utterances training reads.
        val: Held-out utterances of the training speakers.
        unseen: Every utterance of the speakers kept out of training.
        pitch: The PitchSpec of the cached F0; None for a folder prepared without F0.
    """

    root: Path
    spec: FeatureSpec
    speakers: list[str]
    train: list[Utterance]
    val: list[Utterance]
    unseen: list[Utterance] = field(default_factory=list)
    pitch: PitchSpec | None = None

    @property
    def unseen_speakers(self) -> list[str]:
        """Names of the speakers kept out of training, sorted."""
        return sorted({utterance.speaker for utterance in self.unseen})


def load_prepared(root: str | Path) -> PreparedCorpus:
    """Read a prepared corpus's feature spec, speaker list, PitchSpec and manifest.

    Raises:
        DatasetError: if the folder is not a complete prepared corpus or has no training
            utterances.
    """
    root = Path(root)
    spec, speakers, entries = read_manifest(root)
    splits: dict[str, list[Utterance]] = {"train": [], "val": [], "unseen": []}
    for entry in entries:
        splits[entry.split].append(Utterance(root, entry))
    if not splits["train"]:
        raise DatasetError(f"{root / 'manifest.jsonl'}: no training utterances")
    return PreparedCorpus(root, spec, speakers, **splits, pitch=read_pitch_spec(root))


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


def crop_f0(utterance: Utterance, start_frame: int, frames: int) -> np.ndarray:
    """F0 of frames [start_frame, start_frame + frames), as `crop` takes the mel's.

    Padding past the end is 0 Hz: unvoiced, as the tracker finds silence.

    Returns:
        ndarray: F0 (frames,) in Hz, float32.
    """
    f0 = utterance.load_f0()
    stop_frame = min(start_frame + frames, utterance.frames)
    out = np.zeros(frames, dtype=np.float32)
    out[: stop_frame - start_frame] = f0[start_frame:stop_frame]
    return out


def crop_item(utterance: Utterance, start_frame: int, frames: int, spec: FeatureSpec) -> dict:
    """One crop as a dataset item: audio (frames * hop,), mel (n_mels, frames), speaker id,
    and f0 (frames,) when the corpus has F0."""
    audio, mel = crop(utterance, start_frame, frames, spec)
    item = {"audio": audio, "mel": mel, "speaker": utterance.speaker_id}
    if utterance.has_f0:
        item["f0"] = crop_f0(utterance, start_frame, frames)
    return item


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
        """The crop of `utterance` from frame `start` (`crop_item`); subclasses add labels."""
        return crop_item(utterance, start, self.segment_frames, self.spec)

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
    field (f0 (B, F), per-frame labels (B, F)) stacked along a new batch axis."""
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


def speaker_turns(utterances: list) -> list:
    """The utterances in speaker turns: each speaker's first (in the given order), then each
    one's second, and so on, speakers in name order; so the first N cover N speakers, not
    the alphabetically first speaker's N utterances."""
    by_speaker: dict[str, list] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance)
    queues = [by_speaker[name] for name in sorted(by_speaker)]
    longest = max((len(queue) for queue in queues), default=0)
    return [queue[turn] for turn in range(longest) for queue in queues if turn < len(queue)]


def validation_utterances(corpus: PreparedCorpus, count: int) -> list[Utterance]:
    """The held-out utterances a training run scores: the first `count` of the val split in
    speaker turns (`speaker_turns`), so that 16 of them cover 16 speakers, not the
    alphabetically first two or three. Falls back to training utterances when the corpus
    has no held-out split; never uses the unseen speakers, which no model was given a
    speaker id for."""
    return speaker_turns(corpus.val or corpus.train)[:count]


def validation_items(
    corpus: PreparedCorpus, count: int, frames: int
) -> list[dict[str, torch.Tensor]]:
    """A fixed held-out set: the first `frames` frames of each `validation_utterances`.

    Each item is a batch of one (audio (1, T), mel (1, n_mels, F), speaker (1,), f0 (1, F)
    with F0), unpadded.
    """
    return [
        collate([crop_item(utterance, 0, min(frames, utterance.frames), corpus.spec)])
        for utterance in validation_utterances(corpus, count)
    ]
