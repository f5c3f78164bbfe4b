"""Finding the utterances of a speech corpus folder, whatever its layout.

Three layouts are recognised, in this order:
- ljspeech: `metadata.csv` (`id|text|normalized text`) and `wavs/<id>.wav`; one speaker named
  after the folder; the normalized text (or the text when it is missing) is the transcript.
  Audio in `wavs/` that metadata.csv does not list is reported, not used.
- vctk: one sub-folder per speaker holding audio files (searched recursively), each with an
  optional transcript `<stem>.txt` beside it. `wavenet corpus` writes this layout. Audio files
  directly in the top folder belong to a speaker named after the folder.
- folder: audio files directly in the folder, one speaker named after the folder.
Audio files are .wav, .flac and .ogg; hidden files and folders are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from training.dataset_format import DatasetError
from wavenet.audio import AUDIO_SUFFIXES

__all__ = ["Source", "find_sources"]


@dataclass(frozen=True)
class Source:
    """One audio file of a corpus.

    Attributes:
        path: The file.
        relative: Its path relative to the corpus folder (posix), as reports name it.
        speaker: Speaker name.
        utt_id: Utterance id, unique in the corpus and safe as a file name.
        text: Transcript, or None.
    """

    path: Path
    relative: str
    speaker: str
    utt_id: str
    text: str | None


def find_sources(data: Path) -> tuple[str, list[Source], list[dict[str, str]]]:
    """The utterances of the corpus in `data`.

    Returns:
        (layout, sources, dropped): the layout name, the audio files found (sorted by id), and
        {source, reason} for entries that cannot even be located (e.g. listed, no file).

    Raises:
        DatasetError: if `data` is not a folder or holds no audio at all.
    """
    if not data.is_dir():
        raise DatasetError(f"{data}: no such corpus folder")
    if (data / "metadata.csv").is_file() and (data / "wavs").is_dir():
        layout, found, dropped = "ljspeech", *_ljspeech(data)
    else:
        found, dropped = _speaker_folders(data), []
        layout = "vctk" if any(speaker != _name(data) for _, speaker, _ in found) else "folder"
    if not found and not dropped:
        suffixes = ", ".join(AUDIO_SUFFIXES)
        raise DatasetError(f"{data}: no audio files ({suffixes}) found in any known layout")
    sources = _with_unique_ids(data, found, prefix_speaker=layout == "vctk")
    return layout, sorted(sources, key=lambda source: source.utt_id), dropped


def _ljspeech(data: Path) -> tuple[list[tuple[Path, str, str | None]], list[dict[str, str]]]:
    """(path, speaker, text) per metadata line, and the lines that name no usable file."""
    found, dropped = [], []
    lines = (data / "metadata.csv").read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        fields = line.split("|")
        if not line.strip():
            continue
        if len(fields) < 2 or not fields[0].strip():
            reason = f"line {number} is not id|text|normalized text"
            dropped.append({"source": "metadata.csv", "reason": reason})
            continue
        stem = fields[0].strip()
        text = (fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]).strip()
        paths = [data / "wavs" / f"{stem}{suffix}" for suffix in AUDIO_SUFFIXES]
        path = next((path for path in paths if path.is_file()), None)
        if path is None:
            reason = f"listed in metadata.csv line {number}, but no audio file"
            dropped.append({"source": f"wavs/{stem}.wav", "reason": reason})
        else:
            found.append((path, _name(data), text or None))
    listed = {path for path, _, _ in found}
    for path in _audio_files((data / "wavs").iterdir()):
        if path not in listed:
            reason = "not listed in metadata.csv"
            dropped.append({"source": path.relative_to(data).as_posix(), "reason": reason})
    return found, dropped


def _speaker_folders(data: Path) -> list[tuple[Path, str, str | None]]:
    """(path, speaker, text): each sub-folder is a speaker; loose files belong to the folder."""
    found = [(path, _name(data)) for path in _audio_files(data.iterdir())]
    for folder in sorted(path for path in data.iterdir() if path.is_dir()):
        if not folder.name.startswith("."):
            found += [(path, folder.name) for path in _audio_files(folder.rglob("*"))]
    return [(path, speaker, _transcript(path)) for path, speaker in found]


def _audio_files(paths) -> list[Path]:
    return sorted(
        path
        for path in paths
        if path.suffix.lower() in AUDIO_SUFFIXES
        and not path.name.startswith(".")
        and path.is_file()
    )


def _transcript(audio_path: Path) -> str | None:
    text_path = audio_path.with_suffix(".txt")
    if not text_path.is_file():
        return None
    text = " ".join(text_path.read_text(encoding="utf-8", errors="replace").split())
    return text or None


def _with_unique_ids(
    data: Path, found: list[tuple[Path, str, str | None]], prefix_speaker: bool
) -> list[Source]:
    """Ids are file stems; with several speakers, prefixed with the speaker unless the stem
    already starts with it (VCTK's p225_001)."""
    sources, taken = [], set()
    for path, speaker, text in found:
        utt_id = _safe(path.stem)
        if prefix_speaker and not utt_id.startswith(_safe(speaker)):
            utt_id = f"{_safe(speaker)}_{utt_id}"
        # Prefixing with the speaker cannot separate files with one stem in one speaker's
        # sub-folders (e.g. mic1/ and mic2/), so number the later ones.
        base, number = utt_id, 1
        while utt_id in taken:
            number += 1
            utt_id = f"{base}_{number}"
        taken.add(utt_id)
        relative = path.relative_to(data).as_posix()
        sources.append(Source(path, relative, speaker, utt_id, text))
    return sources


def _name(folder: Path) -> str:
    return folder.resolve().name or "speaker"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
