"""`wavenet prepare`: turn a speech corpus into the cached, training-ready folder.

Every utterance is read, resampled to `spec.sample_rate`, trimmed of long silences, brought to a
common level, zero-padded to a whole number of hops, and cached as float32 waveform and log-mel
.npy files (format in `training.dataset_format`). Files that cannot be used are listed in
report.json with the reason, never silently dropped and never fatal.

Silence (`trim_silence`): the audio is cut into 10 ms blocks; a block whose RMS is more than
`silence_db` (default 40 dB) below the loudest block's is silent. Leading and trailing silence
is cut to `edge_silence_seconds` (0.1 s); an internal run of silent blocks longer than
`max_pause_seconds` (0.5 s) keeps its first and last halves of that length.

Level (`normalise_level`): "peak" scales the loudest sample to `peak_dbfs` (-1 dBFS); "rms"
scales the RMS of the trimmed audio to `rms_dbfs` (-20 dBFS) but never lets a sample exceed
`peak_dbfs`; "none" leaves the level alone.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from training.config import load_config
from training.dataset_format import DatasetError, ManifestEntry, write_text_atomic
from training.layouts import Source, find_sources
from wavenet.audio import load_audio
from wavenet.errors import AudioError
from wavenet.features import FeatureSpec

__all__ = ["PrepareConfig", "PrepareReport", "normalise_level", "prepare", "trim_silence"]

BLOCK_SECONDS = 0.01  # silence is judged per 10 ms block: short enough to keep word onsets


class PrepareConfig(BaseModel):
    """How `wavenet prepare` turns a corpus into training data (YAML maps onto this)."""

    model_config = ConfigDict(extra="forbid")

    spec: FeatureSpec = Field(default_factory=FeatureSpec, description="Features to cache.")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Share of utterances held out.")
    seed: int = Field(0, description="Seed of the held-out split.")
    # The seeded draw depends on every kept utterance, so a subset of a corpus (what travels
    # to a GPU machine, `training.carry`) would get another split; naming the ids keeps it.
    val_ids: list[str] | None = Field(
        None,
        description="Held-out utterance ids, replacing the seeded draw (val_fraction, seed); "
        "ids that are not kept are ignored.",
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
    def _check_lengths(self) -> PrepareConfig:
        if self.min_seconds >= self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must be below max_seconds")
        return self


class PrepareReport(BaseModel):
    """What a prepare run kept and dropped; saved as report.json."""

    data: str = Field(description="The corpus folder read.")
    layout: str = Field(description="ljspeech, vctk or folder.")
    kept: int = Field(description="Utterances in the manifest.")
    dropped: int = Field(description="Files left out.")
    train: int = Field(description="Kept utterances in the training split.")
    val: int = Field(description="Kept utterances in the held-out split.")
    seconds: float = Field(description="Audio kept, after trimming, before padding.")
    speakers: list[str] = Field(description="Speaker names; index = speaker id.")
    dropped_files: list[dict[str, str]] = Field(description="{source, reason} per dropped file.")


class _Dropped(Exception):
    """A file that cannot be used; the message is the reason."""


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
    kept: list[tuple[Source, int]] = []  # (source, samples before padding)
    for source in tqdm(sources, desc="prepare", unit="file", leave=False):
        try:
            kept.append((source, _prepare_one(source, config, out)))
        except _Dropped as reason:
            dropped.append({"source": source.relative, "reason": str(reason)})
    if not kept:
        reasons = "; ".join(f"{d['source']}: {d['reason']}" for d in dropped[:3])
        raise DatasetError(
            f"{data}: none of {len(sources)} audio file(s) could be used ({reasons})"
        )
    speakers = sorted({source.speaker for source, _ in kept})
    utterances = [(source.utt_id, source.speaker) for source, _ in kept]
    if config.val_ids is None:
        val_ids = held_out_ids(utterances, config.val_fraction, config.seed)
    else:
        val_ids = set(config.val_ids) & {utt_id for utt_id, _ in utterances}
    entries = [_entry(source, samples, config.spec, speakers, val_ids) for source, samples in kept]
    report = PrepareReport(
        data=str(data.resolve()),
        layout=layout,
        kept=len(entries),
        dropped=len(dropped),
        train=len(entries) - len(val_ids),
        val=len(val_ids),
        seconds=round(sum(samples for _, samples in kept) / config.spec.sample_rate, 3),
        speakers=speakers,
        dropped_files=dropped,
    )
    _write_folder(out, config, report, entries)
    return report


def print_report(report: PrepareReport, file=None) -> None:
    """One summary line, then one line per dropped file with its reason (to stdout by default)."""
    file = file or sys.stdout
    print(
        f"kept {report.kept} utterance(s) ({report.seconds / 60:.1f} min, "
        f"{len(report.speakers)} speaker(s), train {report.train}, val {report.val}); "
        f"dropped {report.dropped} file(s)",
        file=file,
    )
    for item in report.dropped_files:
        print(f"  dropped {item['source']}: {item['reason']}", file=file)


def trim_silence(
    audio: np.ndarray,
    sample_rate: int,
    silence_db: float,
    edge_seconds: float,
    pause_seconds: float,
) -> np.ndarray:
    """Cut leading/trailing silence to `edge_seconds` and internal pauses to `pause_seconds`.

    Args:
        audio (ndarray): Waveform (samples,).

    Returns:
        ndarray: The trimmed waveform (kept samples,); empty when the audio is all zeros.
    """
    block = max(1, round(BLOCK_SECONDS * sample_rate))
    blocks = math.ceil(audio.size / block)
    padded = np.pad(audio, (0, blocks * block - audio.size)).reshape(blocks, block)
    rms = np.sqrt(np.mean(padded.astype(np.float64) ** 2, axis=1))
    if rms.max() == 0:
        return audio[:0]
    silent = rms < rms.max() * 10 ** (silence_db / 20)
    voiced = np.flatnonzero(~silent)
    edge, pause = round(edge_seconds / BLOCK_SECONDS), round(pause_seconds / BLOCK_SECONDS)
    keep = np.zeros(blocks, dtype=bool)
    keep[max(0, voiced[0] - edge) : voiced[-1] + 1 + edge] = True
    # Each gap between consecutive voiced blocks is an internal pause.
    for start, end in zip(voiced[:-1] + 1, voiced[1:], strict=True):
        if end - start > pause:
            keep[start + pause // 2 : end - (pause - pause // 2)] = False
    return audio[np.repeat(keep, block)[: audio.size]]


def normalise_level(audio: np.ndarray, level: str, peak_dbfs: float, rms_dbfs: float) -> np.ndarray:
    """Scale `audio` (samples,) to a common level (see the module docstring)."""
    peak = float(np.abs(audio).max())
    if level == "none" or peak == 0:
        return audio
    ceiling = 10 ** (peak_dbfs / 20)
    gain = ceiling / peak
    if level == "rms":
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        gain = min(gain, 10 ** (rms_dbfs / 20) / rms)
    return (audio * gain).astype(np.float32)


def held_out_ids(utterances: list[tuple[str, str]], fraction: float, seed: int) -> set[str]:
    """The ids of the held-out utterances: `fraction` of them, at least one when there are two.

    Each speaker's utterances are shuffled, then dealt out speaker by speaker, so the held-out
    set covers as many speakers as its size allows. Depends only on the ids and the seed.
    """
    if fraction <= 0 or len(utterances) < 2:
        return set()
    count = min(len(utterances) - 1, max(1, round(fraction * len(utterances))))
    rng = random.Random(seed)
    by_speaker: dict[str, list[str]] = {}
    for utt_id, speaker in sorted(utterances):
        by_speaker.setdefault(speaker, []).append(utt_id)
    queues = [by_speaker[speaker] for speaker in sorted(by_speaker)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    dealt = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return set(dealt[:count])


def _prepare_one(source: Source, config: PrepareConfig, out: Path) -> int:
    """Read, clean and cache one utterance; returns its length in samples before padding."""
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
    _save_npy(out / "audio" / f"{source.utt_id}.npy", padded)
    _save_npy(out / "mel" / f"{source.utt_id}.npy", mel)
    return audio.size


def _entry(
    source: Source, samples: int, spec: FeatureSpec, speakers: list[str], val_ids: set[str]
) -> ManifestEntry:
    frames = spec.frames_for(samples)
    return ManifestEntry(
        id=source.utt_id,
        speaker=source.speaker,
        speaker_id=speakers.index(source.speaker),
        split="val" if source.utt_id in val_ids else "train",
        audio=f"audio/{source.utt_id}.npy",
        mel=f"mel/{source.utt_id}.npy",
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
    for name in ("audio", "mel"):
        (out / name).mkdir(parents=True, exist_ok=True)


def _write_folder(
    out: Path, config: PrepareConfig, report: PrepareReport, entries: list[ManifestEntry]
) -> None:
    """Write the JSON files, remove stale arrays, and write the manifest last."""
    ids = {entry.id for entry in entries}
    for name in ("audio", "mel"):
        for path in (out / name).glob("*.npy"):
            if path.stem not in ids:
                path.unlink()
    write_text_atomic(out / "feature_spec.json", config.spec.model_dump_json(indent=2))
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
