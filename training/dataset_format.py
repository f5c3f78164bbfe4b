"""The prepared-data folder that `wavenet prepare` writes and training and evaluation read.

    PREPARED/feature_spec.json    the FeatureSpec (`spec.model_dump_json()`)
    PREPARED/prepare_config.json  the resolved PrepareConfig that made the folder
    PREPARED/speakers.json        list of speaker names; the index is the speaker id
    PREPARED/manifest.jsonl       one `ManifestEntry` per line, one per kept utterance
    PREPARED/audio/<id>.npy       float32 (samples,) waveform in [-1, 1] at spec.sample_rate,
                                  zero-padded to samples = frames * hop_length
    PREPARED/mel/<id>.npy         float32 (n_mels, frames) = spec.extract(audio)
    PREPARED/pitch_spec.json      the PitchSpec the F0 was tracked with
    PREPARED/f0/<id>.npy          float32 (frames,) = track_f0(audio, spec, pitch): F0 in Hz
                                  at the mel's frame centres, 0 where unvoiced
    PREPARED/report.json          kept/dropped counts and why each dropped file was dropped,
                                  per-speaker minutes, voiced share and F0 percentiles

Splits: "train" (the only one any training job reads), "val" (held-out utterances of the
training speakers) and "unseen" (every utterance of speakers kept out of training, to measure
how a model does on a voice it never heard). speakers.json lists the training speakers only,
so a model learns no embedding it never trains; an unseen entry has `speaker_id` null.

Folders prepared before F0 existed have no pitch_spec.json, no f0/ and no `f0` field; they
still load, without F0. A folder with pitch_spec.json has an F0 file for every entry.

The manifest is written last (temp file + rename), so a folder that has one is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wavenet.errors import AudioError
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec

__all__ = [
    "DatasetError",
    "ManifestEntry",
    "load_entry",
    "load_f0",
    "read_manifest",
    "read_pitch_spec",
    "write_text_atomic",
]


class DatasetError(AudioError):
    """A corpus or prepared-data folder is missing, malformed or inconsistent."""


class ManifestEntry(BaseModel):
    """One kept utterance: a line of manifest.jsonl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Utterance id, unique in the folder.")
    speaker: str = Field(min_length=1, description="Speaker name, as in speakers.json.")
    speaker_id: int | None = Field(
        ge=0, description="Index of `speaker` in speakers.json; null for an unseen speaker."
    )
    split: Literal["train", "val", "unseen"] = Field(
        description="Training, held-out of a training speaker, or of an unseen speaker."
    )
    audio: str = Field(description="Path of the waveform .npy, relative to the folder.")
    mel: str = Field(description="Path of the log-mel .npy, relative to the folder.")
    f0: str | None = Field(None, description="Path of the F0 .npy; null when prepared without.")
    samples: int = Field(gt=0, description="Waveform length, always frames * hop_length.")
    frames: int = Field(gt=0, description="Number of mel frames.")
    source: str = Field(description="The original audio file.")
    text: str | None = Field(None, description="Transcript, when the corpus has one.")


def read_manifest(
    prepared_dir: str | Path, check_files: bool = True
) -> tuple[FeatureSpec, list[str], list[ManifestEntry]]:
    """Read and validate a prepared folder.

    Args:
        prepared_dir: The folder `wavenet prepare` wrote.
        check_files: Also check that every entry's audio and mel files exist.

    Returns:
        (spec, speakers, entries): the FeatureSpec, speaker names (index = speaker id) and the
        manifest entries in file order.

    Raises:
        DatasetError: naming the file (and line) that is missing or wrong.
    """
    root = Path(prepared_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such prepared-data folder (run `wavenet prepare`)")
    spec = _read_spec(root / "feature_spec.json")
    speakers = _read_speakers(root / "speakers.json")
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: missing; the folder was not fully prepared")
    has_f0 = read_pitch_spec(root) is not None
    entries = []
    seen: set[str] = set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = _parse_entry(line, f"{manifest} line {number}")
        problem = _entry_problem(entry, spec, speakers, seen, has_f0, root if check_files else None)
        if problem:
            raise DatasetError(f"{manifest} line {number}: {problem}")
        seen.add(entry.id)
        entries.append(entry)
    if not entries:
        raise DatasetError(f"{manifest}: lists no utterances")
    return spec, speakers, entries


def load_entry(
    prepared_dir: str | Path, entry: ManifestEntry, spec: FeatureSpec, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The cached arrays of one utterance, checked against the manifest.

    Returns:
        (audio, mel): float32 waveform (samples,) and float32 log-mel (n_mels, frames).
        With `mmap`, read-only memory maps instead of arrays in memory.

    Raises:
        DatasetError: if a file is unreadable or its shape or dtype disagrees with the entry.
    """
    root = Path(prepared_dir)
    audio = _load_array(root / entry.audio, (entry.samples,), mmap)
    return audio, _load_array(root / entry.mel, (spec.n_mels, entry.frames), mmap)


def load_f0(prepared_dir: str | Path, entry: ManifestEntry, mmap: bool = False) -> np.ndarray:
    """The cached F0 of one utterance: float32 (frames,) in Hz, 0 where unvoiced.

    Raises:
        DatasetError: if the folder was prepared without F0, or the file is unreadable or
            its shape or dtype disagrees with the entry.
    """
    if entry.f0 is None:
        raise DatasetError(
            f"{prepared_dir}: utterance {entry.id!r} has no F0 (the folder was prepared "
            "without it: run `wavenet prepare` again)"
        )
    return _load_array(Path(prepared_dir) / entry.f0, (entry.frames,), mmap)


def read_pitch_spec(prepared_dir: str | Path) -> PitchSpec | None:
    """The PitchSpec of a prepared folder's F0, or None for a folder prepared without F0.

    Raises:
        DatasetError: if pitch_spec.json is unreadable or not a PitchSpec.
    """
    path = Path(prepared_dir) / "pitch_spec.json"
    if not path.is_file():
        return None
    try:
        return PitchSpec.model_validate(_read_json(path))
    except ValidationError as error:
        raise DatasetError(f"{path}: not a PitchSpec ({_first_problem(error)})") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename it into place."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _load_array(path: Path, shape: tuple[int, ...], mmap: bool) -> np.ndarray:
    """A float32 .npy of the expected shape (a read-only memory map with `mmap`)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: unreadable ({error})") from None
    if array.shape != shape or array.dtype != np.float32:
        raise DatasetError(f"{path}: expected float32 {shape}, found {array.dtype} {array.shape}")
    return array


def _read_json(path: Path):
    if not path.is_file():
        raise DatasetError(f"{path}: missing; the folder was not fully prepared")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None


def _read_spec(path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.model_validate(_read_json(path))
    except ValidationError as error:
        raise DatasetError(f"{path}: not a FeatureSpec ({_first_problem(error)})") from None


def _read_speakers(path: Path) -> list[str]:
    speakers = _read_json(path)
    if (
        not isinstance(speakers, list)
        or not speakers
        or not all(isinstance(name, str) and name for name in speakers)
    ):
        raise DatasetError(f"{path}: expected a non-empty list of speaker names")
    if len(set(speakers)) != len(speakers):
        raise DatasetError(f"{path}: speaker names repeat")
    return speakers


def _parse_entry(line: str, where: str) -> ManifestEntry:
    try:
        return ManifestEntry.model_validate_json(line)
    except ValidationError as error:
        raise DatasetError(f"{where}: {_first_problem(error)}") from None


def _entry_problem(
    entry: ManifestEntry,
    spec: FeatureSpec,
    speakers: list[str],
    seen: set[str],
    has_f0: bool,
    root: Path | None,
) -> str | None:
    """Why `entry` does not fit the folder, or None when it does."""
    if entry.id in seen:
        return f"utterance id {entry.id!r} repeats"
    if entry.split == "unseen":
        if entry.speaker_id is not None or entry.speaker in speakers:
            return f"unseen speaker {entry.speaker!r} has a speaker id or is in speakers.json"
    elif (
        entry.speaker_id is None
        or entry.speaker_id >= len(speakers)
        or speakers[entry.speaker_id] != entry.speaker
    ):
        return f"speaker {entry.speaker!r} does not match speaker id {entry.speaker_id}"
    if entry.samples != spec.samples_for(entry.frames):
        return f"samples {entry.samples} != frames {entry.frames} * hop {spec.hop_length}"
    if has_f0 != (entry.f0 is not None):
        return (
            "no f0 file, but the folder has pitch_spec.json"
            if has_f0
            else ("an f0 file, but the folder has no pitch_spec.json")
        )
    for relative in (entry.audio, entry.mel, entry.f0):
        if relative is None:
            continue
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts:
            return f"path {relative!r} leaves the folder"
        if root is not None and not (root / path).is_file():
            return f"{root / path}: missing"
    return None


def _first_problem(error: ValidationError) -> str:
    item = error.errors()[0]
    location = ".".join(str(part) for part in item["loc"]) or "(top)"
    return f"{location}: {item['msg']}"
