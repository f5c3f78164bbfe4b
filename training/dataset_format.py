"""The prepared-data folder that `wavenet prepare` writes and training and evaluation read.

    PREPARED/feature_spec.json    the FeatureSpec (`spec.model_dump_json()`)
    PREPARED/prepare_config.json  the resolved PrepareConfig that made the folder
    PREPARED/speakers.json        list of speaker names; the index is the speaker id
    PREPARED/manifest.jsonl       one `ManifestEntry` per line, one per kept utterance
    PREPARED/audio/<id>.npy       float32 (samples,) waveform in [-1, 1] at spec.sample_rate,
                                  zero-padded to samples = frames * hop_length
    PREPARED/mel/<id>.npy         float32 (n_mels, frames) = spec.extract(audio)
    PREPARED/report.json          kept/dropped counts and why each dropped file was dropped

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

__all__ = [
    "DatasetError",
    "ManifestEntry",
    "load_entry",
    "read_manifest",
    "write_text_atomic",
]


class DatasetError(AudioError):
    """A corpus or prepared-data folder is missing, malformed or inconsistent."""


class ManifestEntry(BaseModel):
    """One kept utterance: a line of manifest.jsonl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Utterance id, unique in the folder.")
    speaker: str = Field(min_length=1, description="Speaker name, as in speakers.json.")
    speaker_id: int = Field(ge=0, description="Index of `speaker` in speakers.json.")
    split: Literal["train", "val"] = Field(description="Training or held-out utterance.")
    audio: str = Field(description="Path of the waveform .npy, relative to the folder.")
    mel: str = Field(description="Path of the log-mel .npy, relative to the folder.")
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
    entries = []
    seen: set[str] = set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = _parse_entry(line, f"{manifest} line {number}")
        problem = _entry_problem(entry, spec, speakers, seen, root if check_files else None)
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
    mode = "r" if mmap else None
    arrays = []
    for relative, shape in (
        (entry.audio, (entry.samples,)),
        (entry.mel, (spec.n_mels, entry.frames)),
    ):
        path = Path(prepared_dir) / relative
        try:
            array = np.load(path, mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DatasetError(f"{path}: unreadable ({error})") from None
        if array.shape != shape or array.dtype != np.float32:
            raise DatasetError(
                f"{path}: expected float32 {shape}, found {array.dtype} {array.shape}"
            )
        arrays.append(array)
    return arrays[0], arrays[1]


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
    root: Path | None,
) -> str | None:
    """Why `entry` does not fit the folder, or None when it does."""
    if entry.id in seen:
        return f"utterance id {entry.id!r} repeats"
    if entry.speaker_id >= len(speakers) or speakers[entry.speaker_id] != entry.speaker:
        return f"speaker {entry.speaker!r} does not match speaker id {entry.speaker_id}"
    if entry.samples != spec.samples_for(entry.frames):
        return f"samples {entry.samples} != frames {entry.frames} * hop {spec.hop_length}"
    for relative in (entry.audio, entry.mel):
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
