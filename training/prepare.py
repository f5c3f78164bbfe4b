"""`wavenet prepare`: turn a speech corpus into the cached, training-ready folder.

Every utterance is read, resampled to `spec.sample_rate`, trimmed of long silences, brought to a
common level, zero-padded to a whole number of hops, and cached as float32 waveform, log-mel
and F0 .npy files (format in `training.dataset_format`); F0 is tracked on that final audio
with the config's PitchSpec (`wavenet.pitch`). Files that cannot be used are listed in
report.json with the reason, never silently dropped and never fatal. The held-out splits
("val", "unseen") are chosen as `training.splits` says.
Silences are trimmed and levels set as `training.cleanup` says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from training.cleanup import normalise_level, trim_silence
from training.config import load_config
from training.dataset_format import DatasetError, ManifestEntry, write_text_atomic
from training.layouts import Source, find_sources
from training.prepare_report import PrepareReport, print_report, speaker_stats
from training.splits import held_out_ids, unseen_speakers
from wavenet.audio import load_audio
from wavenet.errors import AudioError
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, track_f0

__all__ = [
    "PrepareConfig",
    "PrepareReport",
    "held_out_ids",
    "normalise_level",
    "prepare",
    "print_report",
    "trim_silence",
]

ARRAY_FOLDERS = ("audio", "mel", "f0")  # one .npy per utterance in each


class PrepareConfig(BaseModel):
    """How `wavenet prepare` turns a corpus into training data (YAML maps onto this)."""

    model_config = ConfigDict(extra="forbid")

    spec: FeatureSpec = Field(default_factory=FeatureSpec, description="Features to cache.")
    pitch: PitchSpec = Field(default_factory=PitchSpec, description="F0 tracker settings.")
    # One whole speaker kept out of training measures how a model does on a new voice.
    # None picks one (`training.splits.unseen_speakers`); the folder's prepare_config.json
    # saves the speakers picked, so preparing again (or a subset of the corpus) keeps them out.
    unseen_speakers: list[str] | None = Field(
        None,
        description="Speakers kept out of training; None: picked; []: none; names that are "
        "not in the corpus are ignored.",
    )
    val_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of the training speakers' utterances held out."
    )
    seed: int = Field(0, description="Seed of the held-out split.")
    # The seeded draw depends on every kept utterance, so a subset of a corpus (what travels
    # to a GPU machine, `training.carry`) would get another split; naming the ids keeps it.
    val_ids: list[str] | None = Field(
        None,
        description="Held-out utterance ids, replacing the seeded draw (val_fraction, seed); "
        "ids that are not kept, or are an unseen speaker's, are ignored.",
    )
    min_seconds: float = Field(0.5, ge=0, description="Shorter (after trimming) is dropped.")
    max_seconds: float = Field(20.0, gt=0, description="Longer (after trimming) is dropped.")
    silence_db: float = Field(-40.0, lt=0, description="Block level, re loudest, that is silent.")
    edge_silence_seconds: float = Field(0.1, ge=0, description="Silence kept at start and end.")
    max_pause_seconds: float = Field(0.5, ge=0, description="Longer internal pauses are cut.")
    level: Literal["peak", "rms", "none"] = Field("peak", description="Level normalisation.")
    peak_dbfs: float = Field(-1.0, le=0, description="Target peak, and the ceiling for rms.")
    rms_dbfs: float = Field(-20.0, lt=0, description="Target RMS when level is rms.")

    @model_validator(mode="after")
    def _check_consistent(self) -> PrepareConfig:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be below max_seconds")
        if self.pitch.f0_max >= self.spec.sample_rate / 2:
            raise ValueError(
                f"pitch.f0_max ({self.pitch.f0_max}) must be below Nyquist "
                f"({self.spec.sample_rate / 2})"
            )
        return self


class _Dropped(Exception):
    """A file that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class _Kept:
    """A cached utterance: its source, length before padding, and F0 (frames,)."""

    source: Source
    samples: int
    f0: np.ndarray


def prepare(
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    val_fraction: float | None = None,
    seed: int | None = None,
) -> PrepareReport:
    """Prepare the corpus in `data` into `out`; CLI values override the config file's.

    Raises:
        DatasetError: if `data` holds no audio or `out` is a non-empty foreign folder.
        ConfigError: if the config does not fit `PrepareConfig`.
    """
    config = load_config(config_path, PrepareConfig, val_fraction=val_fraction, seed=seed)
    data, out = Path(data), Path(out)
    layout, sources, dropped = find_sources(data)
    _claim_output(out)
    kept: list[_Kept] = []
    for source in tqdm(sources, desc="prepare", unit="file", leave=False):
        try:
            kept.append(_prepare_one(source, config, out))
        except _Dropped as reason:
            dropped.append({"source": source.relative, "reason": str(reason)})
    if not kept:
        reasons = "; ".join(f"{d['source']}: {d['reason']}" for d in dropped[:3])
        raise DatasetError(
            f"{data}: none of {len(sources)} audio file(s) could be used ({reasons})"
        )
    splits, unseen = _assign_splits(kept, config)
    present = {item.source.speaker for item in kept}
    speakers = sorted(present - set(unseen))
    if not speakers:
        raise DatasetError(f"unseen_speakers {unseen} leave no speaker to train on")
    entries = [_entry(item, config.spec, speakers, splits[item.source.utt_id]) for item in kept]
    report = PrepareReport(
        data=str(data.resolve()),
        layout=layout,
        kept=len(entries),
        dropped=len(dropped),
        train=sum(split == "train" for split in splits.values()),
        val=sum(split == "val" for split in splits.values()),
        unseen=sum(split == "unseen" for split in splits.values()),
        seconds=round(sum(item.samples for item in kept) / config.spec.sample_rate, 3),
        speakers=speakers,
        unseen_speakers=unseen,
        unseen_not_found=sorted(set(config.unseen_speakers or []) - present),
        speaker_stats=_speaker_stats(kept, unseen, config.spec.sample_rate),
        dropped_files=dropped,
    )
    _write_folder(out, config.model_copy(update={"unseen_speakers": unseen}), report, entries)
    return report


def _prepare_one(source: Source, config: PrepareConfig, out: Path) -> _Kept:
    """Read, clean and cache one utterance (audio, mel, F0)."""
    spec = config.spec
    if source.path.stat().st_size == 0:
        raise _Dropped("empty file (0 bytes)")
    try:
        audio = load_audio(source.path, spec.sample_rate).numpy()
    except AudioError as error:
        raise _Dropped(str(error).removeprefix(f"{source.path}: ")) from None
    audio = trim_silence(
        audio,
        spec.sample_rate,
        config.silence_db,
        config.edge_silence_seconds,
        config.max_pause_seconds,
    )
    seconds = audio.size / spec.sample_rate
    if audio.size == 0:
        raise _Dropped("silent (all samples are zero)")
    if seconds < config.min_seconds:
        raise _Dropped(
            f"too short: {seconds:.2f} s after trimming (min_seconds {config.min_seconds})"
        )
    if seconds > config.max_seconds:
        raise _Dropped(
            f"too long: {seconds:.2f} s after trimming (max_seconds {config.max_seconds})"
        )
    audio = normalise_level(audio, config.level, config.peak_dbfs, config.rms_dbfs)
    frames = spec.frames_for(audio.size)
    padded = np.zeros(spec.samples_for(frames), dtype=np.float32)
    padded[: audio.size] = audio
    mel = spec.extract(torch.from_numpy(padded)).numpy().astype(np.float32)
    try:
        f0 = track_f0(padded, spec, config.pitch)
    except (ValueError, RuntimeError) as error:  # parselmouth.PraatError is a RuntimeError
        raise _Dropped(f"pitch tracking failed ({error})") from None
    for name, array in (("audio", padded), ("mel", mel), ("f0", f0)):
        _save_npy(out / name / f"{source.utt_id}.npy", array)
    return _Kept(source, audio.size, f0)


def _assign_splits(kept: list[_Kept], config: PrepareConfig) -> tuple[dict[str, str], list[str]]:
    """The split of each kept utterance id, and the unseen speakers (`training.splits`)."""
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for item in kept:
        speaker = item.source.speaker
        seconds[speaker] = seconds.get(speaker, 0.0) + item.samples / config.spec.sample_rate
        counts[speaker] = counts.get(speaker, 0) + 1
    unseen = unseen_speakers(seconds, counts, config.unseen_speakers)
    seen = [(i.source.utt_id, i.source.speaker) for i in kept if i.source.speaker not in unseen]
    if config.val_ids is None:
        val_ids = held_out_ids(seen, config.val_fraction, config.seed)
    else:
        val_ids = set(config.val_ids) & {utt_id for utt_id, _ in seen}
    splits = {}
    for item in kept:
        utt_id = item.source.utt_id
        in_val = "val" if utt_id in val_ids else "train"
        splits[utt_id] = "unseen" if item.source.speaker in unseen else in_val
    return splits, unseen


def _speaker_stats(kept: list[_Kept], unseen: list[str], rate: int) -> dict:
    """`SpeakerStats` per speaker, by name."""
    by_speaker: dict[str, list[_Kept]] = {}
    for item in kept:
        by_speaker.setdefault(item.source.speaker, []).append(item)
    return {
        speaker: speaker_stats(
            "unseen" if speaker in unseen else "train",
            [item.samples for item in items],
            [item.f0 for item in items],
            rate,
        )
        for speaker, items in sorted(by_speaker.items())
    }


def _entry(item: _Kept, spec: FeatureSpec, speakers: list[str], split: str) -> ManifestEntry:
    source, frames = item.source, spec.frames_for(item.samples)
    return ManifestEntry(
        id=source.utt_id,
        speaker=source.speaker,
        speaker_id=None if split == "unseen" else speakers.index(source.speaker),
        split=split,
        audio=f"audio/{source.utt_id}.npy",
        mel=f"mel/{source.utt_id}.npy",
        f0=f"f0/{source.utt_id}.npy",
        samples=spec.samples_for(frames),
        frames=frames,
        source=source.relative,
        text=source.text,
    )


def _claim_output(out: Path) -> None:
    """Make `out` ready: refuse a foreign non-empty folder, retire an old manifest first."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "feature_spec.json").is_file():
        raise DatasetError(f"{out}: not empty and not a prepared folder; choose a new folder")
    # Without this, a crash part-way through re-preparing would leave the old manifest
    # pointing at files that are being rewritten.
    (out / "manifest.jsonl").unlink(missing_ok=True)
    for name in ARRAY_FOLDERS:
        (out / name).mkdir(parents=True, exist_ok=True)


def _write_folder(
    out: Path, config: PrepareConfig, report: PrepareReport, entries: list[ManifestEntry]
) -> None:
    """Write the JSON files, remove stale arrays, and write the manifest last."""
    ids = {entry.id for entry in entries}
    for name in ARRAY_FOLDERS:
        for path in (out / name).glob("*.npy"):
            if path.stem not in ids:
                path.unlink()
    write_text_atomic(out / "feature_spec.json", config.spec.model_dump_json(indent=2))
    write_text_atomic(out / "pitch_spec.json", config.pitch.model_dump_json(indent=2))
    write_text_atomic(out / "prepare_config.json", config.model_dump_json(indent=2))
    write_text_atomic(out / "speakers.json", json.dumps(report.speakers, indent=2))
    write_text_atomic(out / "report.json", report.model_dump_json(indent=2))
    lines = "".join(entry.model_dump_json() + "\n" for entry in entries)
    write_text_atomic(out / "manifest.jsonl", lines)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temp name, then rename, so no half-written array keeps the final name."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as file:
        np.save(file, array, allow_pickle=False)
    temp.replace(path)
