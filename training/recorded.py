"""Recorded human speech that Debian installs: Asterisk's telephone prompts and KLettres' letters.

- `asterisk`: asterisk-core-sounds-{en,es,fr,it,ru}-g722, professional speakers reading
  telephone-system prompts, G.722 at 16 kHz, under `/usr/share/asterisk/sounds/<voice>/`. A
  voice folder is named `<lang>_<REGION>_<sex>_<Name>` (`en_US_f_Allison`); folders of one
  person (Allison reads both en and es) are one speaker, named after the first folder. Tones,
  beeps and the `silence/` folder are not speech and are skipped.
- `klettres`: klettres-data, letters and syllables read in about 20 languages, Ogg at mostly
  44.1 kHz, under `/usr/share/klettres/<lang>/`; one speaker per language folder
  (`klettres_hu`), each clip's transcript from the folder's `sounds.xml`. A language whose
  `sounds.xml` says its clips are text-to-speech is skipped.

Files are indexed by their real path (the same file may appear under several symlinked folder
names) and measured without decoding: G.722 at 64 kbit/s is 8,000 bytes per second, Ogg from its
header. Licences are read from each package's Debian copyright file.
"""

from __future__ import annotations

import fnmatch
import functools
import html
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import soundfile

__all__ = ["RecordedClip", "debian_licence", "index_asterisk", "index_klettres", "select_clips"]

ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
KLETTRES_ROOT = Path("/usr/share/klettres")
DEBIAN_DOC = Path("/usr/share/doc")
MIN_SOURCE_RATE = 16000  # Hz: narrower sources lack the top of the band a 16 kHz model makes
G722_BYTES_PER_SECOND = 8000  # 64 kbit/s
_VOICE_FOLDER = re.compile(r"(?P<language>[a-z]{2,3})_[A-Z]{2}_(?P<sex>[fm])_(?P<name>\w+)")
_TONE = re.compile(r"beep\w*|\w+-\d*tone")  # beep, beeperr, ascending-2tone, ...
_TTS = re.compile(r"text-to-speech|speech synthesi[sz]|\bTTS\b", re.IGNORECASE)
_SOUND = re.compile(r"<sound\s+name=\"(?P<name>[^\"]*)\"\s+file=\"(?P<file>[^\"]*)\"")

Skip = dict[str, str]  # {source, input, reason}


@dataclass(frozen=True)
class RecordedClip:
    """One installed recording.

    Attributes:
        path: Its real path (symlinks resolved).
        source: `asterisk` or `klettres`.
        speaker: Speaker name, the corpus folder it goes to.
        utt_id: Utterance id, unique in the source and safe as a file name.
        language: ISO 639-1 code of what is said.
        licence: As the package's Debian copyright file states it.
        text: Transcript, or "" when the source has none.
        seconds: Length from the file size or header, before decoding.
    """

    path: Path
    source: str
    speaker: str
    utt_id: str
    language: str
    licence: str
    text: str
    seconds: float


def index_asterisk(root: Path = ASTERISK_ROOT) -> tuple[list[RecordedClip], list[Skip]]:
    """The speech prompts under `root`, each real file once, and the files skipped with why."""
    if not root.is_dir():
        reason = "not installed (Debian: asterisk-core-sounds-{en,es,fr,it,ru}-g722)"
        return [], [_skip("asterisk", root, reason)]
    found, skipped = {}, []
    for path, relative in _real_files(root):
        folder, inner = relative.parts[0], Path(*relative.parts[1:])
        reason = _asterisk_problem(path, inner) if inner.parts else "not in a voice folder"
        if reason:
            skipped.append(_skip("asterisk", path, reason))
        else:
            found[path] = (folder, inner)
    speakers = _asterisk_speakers({folder for folder, _ in found.values()})
    clips = []
    for path, (folder, inner) in found.items():
        speaker = speakers[folder]
        match = _VOICE_FOLDER.fullmatch(folder)
        language = match["language"] if match else folder.split("_")[0]
        package = f"asterisk-core-sounds-{language}-g722"
        prefix = speaker if folder == speaker else f"{speaker}_{language}"
        utt_id = _safe(f"{prefix}_{'_'.join(inner.with_suffix('').parts)}")
        seconds = path.stat().st_size / G722_BYTES_PER_SECOND
        licence = debian_licence(package, f"{language}-prompts")
        clips.append(
            RecordedClip(path, "asterisk", speaker, utt_id, language, licence, "", seconds)
        )
    return clips, skipped


def _asterisk_problem(path: Path, inner: Path) -> str | None:
    """Why an Asterisk file is not a speech clip, or None."""
    if path.suffix != ".g722":
        return f"{path.suffix or 'no suffix'}: only G.722, Asterisk's 16 kHz format, is read"
    if "silence" in inner.parts[:-1]:
        return "silence, not speech"
    if _TONE.fullmatch(path.stem):
        return "a tone or beep, not speech"
    if path.stat().st_size == 0:
        return "empty file"
    return None


def _asterisk_speakers(folders: set[str]) -> dict[str, str]:
    """Voice folder -> speaker: folders of one person (same sex and name) share the name of the
    first of them."""
    speakers, first_folder = {}, {}
    for folder in sorted(folders):
        match = _VOICE_FOLDER.fullmatch(folder)
        person = (match["sex"], match["name"]) if match else (None, folder)
        speakers[folder] = first_folder.setdefault(person, folder)
    return speakers


def index_klettres(root: Path = KLETTRES_ROOT) -> tuple[list[RecordedClip], list[Skip]]:
    """The letters and syllables under `root`, each real file once, and what was skipped."""
    if not root.is_dir():
        return [], [_skip("klettres", root, "not installed (Debian: klettres-data)")]
    licence = debian_licence("klettres-data", "data/sounds.ogg")
    clips, skipped = [], []
    seen: set[Path] = set()
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        labels, notes = _read_sounds_xml(root, folder / "sounds.xml")
        oggs = [(path, inner) for path, inner in _real_files(folder) if path.suffix == ".ogg"]
        if not labels and not oggs:
            continue  # pictures and icons
        if tts := _TTS.search(notes):
            said = next(part for part in re.split(r"\n\s*\n", notes) if tts.group(0) in part)
            reason = f"text-to-speech, sounds.xml says: {' '.join(said.split())}"
            skipped.append(_skip("klettres", folder, reason))
            continue
        missing = [path for path in labels if not path.is_file()]
        if labels and len(missing) == len(labels):
            reason = f"sounds.xml lists {len(labels)} clips, none installed"
            skipped.append(_skip("klettres", folder, reason))
        else:
            skipped += [
                _skip("klettres", path, "listed in sounds.xml, not installed") for path in missing
            ]
        for path, inner in oggs:
            if path in seen:
                continue
            seen.add(path)
            clip, problem = _klettres_clip(path, inner, folder.name, labels.get(path, ""), licence)
            if problem:
                skipped.append(_skip("klettres", path, problem))
            else:
                clips.append(clip)
    return clips, skipped


def _klettres_clip(path: Path, inner: Path, folder: str, text: str, licence: str):
    """(clip, None) for a usable Ogg file (`inner` its path in the language `folder`), or
    (None, why)."""
    try:
        info = soundfile.info(path)
    except Exception as error:  # libsndfile reports every format problem as one error type
        return None, f"not a readable Ogg file ({str(error).strip() or type(error).__name__})"
    if info.frames == 0:
        return None, "empty file"
    if info.samplerate < MIN_SOURCE_RATE:
        return None, f"recorded at {info.samplerate} Hz, below {MIN_SOURCE_RATE} Hz"
    speaker = f"klettres_{folder}"
    utt_id = _safe(f"{speaker}_{'_'.join(inner.with_suffix('').parts)}")
    language = folder.split("_")[0].lower()
    clip = RecordedClip(path, "klettres", speaker, utt_id, language, licence, text, info.duration)
    return clip, None


def _read_sounds_xml(root: Path, xml: Path) -> tuple[dict[Path, str], str]:
    """({real path: what it says}, the file's comments) from a KLettres sounds.xml."""
    if not xml.is_file():
        return {}, ""
    text = xml.read_text(encoding="utf-8", errors="replace")
    notes = "\n".join(re.findall(r"<!--(.*?)-->", text, flags=re.DOTALL))
    labels = {
        Path(os.path.realpath(root / match["file"])): html.unescape(match["name"])
        for match in _SOUND.finditer(text)
    }
    return labels, notes


def debian_licence(package: str, member: str) -> str:
    """The licence of `member` (an upstream file name) in a machine-readable Debian copyright
    file: the last `Files:` paragraph whose pattern matches it, as DEP-5 says."""
    path = DEBIAN_DOC / package / "copyright"
    if not path.is_file():
        return f"unknown (no {path})"
    licence = None
    for patterns, paragraph_licence in _copyright_paragraphs(path):
        if any(fnmatch.fnmatch(member, pattern) for pattern in patterns):
            licence = paragraph_licence
    return licence or f"unknown (see {path})"


@functools.cache
def _copyright_paragraphs(path: Path) -> list[tuple[list[str], str]]:
    """(Files patterns, License) of each paragraph of a DEP-5 copyright file that has both."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
        fields = dict(re.findall(r"^(Files|License):[ \t]*(.*)$", paragraph, flags=re.MULTILINE))
        if "Files" in fields and "License" in fields:
            paragraphs.append((fields["Files"].split(), fields["License"].strip()))
    return paragraphs


def select_clips(
    clips: list[RecordedClip], max_seconds: float | None, max_clips: int | None, seed: int
) -> list[RecordedClip]:
    """All clips, or a seeded draw that takes speakers in turn until either limit is reached."""
    if max_seconds is None and max_clips is None:
        return sorted(clips, key=lambda clip: clip.utt_id)
    rng = random.Random(seed)
    queues: dict[str, list[RecordedClip]] = {}
    for clip in sorted(clips, key=lambda clip: clip.utt_id):
        queues.setdefault(clip.speaker, []).append(clip)
    for queue in queues.values():
        rng.shuffle(queue)
    chosen, seconds = [], 0.0
    while any(queues.values()):
        for queue in queues.values():
            if not queue:
                continue
            if max_clips is not None and len(chosen) >= max_clips:
                return chosen
            if max_seconds is not None and seconds >= max_seconds:
                return chosen
            chosen.append(queue.pop())
            seconds += chosen[-1].seconds
    return chosen


def _real_files(root: Path):
    """(real path, path relative to `root`) of every file under `root`, following symlinks, each
    real file once. A file whose real path lies inside `root` is named by that path."""
    real_root = Path(os.path.realpath(root))
    seen_dirs, seen_files = set(), set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        if os.path.realpath(folder) in seen_dirs:
            dirs[:] = []  # a symlinked folder name for a folder already walked
            continue
        seen_dirs.add(os.path.realpath(folder))
        dirs.sort()
        for name in sorted(names):
            real = Path(os.path.realpath(Path(folder) / name))
            if real in seen_files or not real.is_file():
                continue
            seen_files.add(real)
            inside = real.is_relative_to(real_root)
            yield (
                real,
                real.relative_to(real_root) if inside else (Path(folder) / name).relative_to(root),
            )


def _skip(source: str, item: Path, reason: str) -> Skip:
    return {"source": source, "input": str(item), "reason": reason}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
