"""A synthetic multi-speaker speech corpus read by Debian's flite and festival voices.

Each voice is one speaker. Sentences from `training/text/sentences.txt` (or any text file, one
sentence per line) are shuffled with a seed and dealt out to the voices in turn until the corpus
holds about the requested number of minutes. The output is a VCTK-like layout that
`wavenet prepare` reads:

    OUT/<speaker>/<utt_id>.wav    16-bit PCM, mono, at the target sample rate
    OUT/<speaker>/<utt_id>.txt    the sentence read
    OUT/manifest.csv              path (relative to OUT), speaker, text, seconds

A voice that fails to synthesise is reported and left out; the corpus is built from the rest.
"""

from __future__ import annotations

import csv
import math
import os
import random
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from training.config import ConfigError
from wavenet.audio import load_audio, save_audio
from wavenet.errors import AudioError

__all__ = ["VOICES", "CorpusError", "CorpusSummary", "Voice", "build_corpus", "read_sentences"]

SENTENCES = Path(__file__).parent / "text" / "sentences.txt"
MAX_BATCH = 8  # sentences per synthesiser call: festival's start-up (~0.5 s) is paid once
FIRST_GUESS_SECONDS = 3.0  # expected length of one utterance until real ones are measured


class CorpusError(ConfigError):
    """A corpus cannot be built as asked (unknown voice, no sentences, no voice works)."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        name: Speaker name, used for the folder and the utterance ids.
        engine: Which synthesiser reads the text.
        engine_voice: The voice's name inside the engine (`flite -voice X`, `(voice_X)`).
    """

    name: str
    engine: Literal["flite", "festival"]
    engine_voice: str


VOICES = {
    voice.name: voice
    for voice in [
        Voice("kal", "flite", "kal"),  # 8 kHz diphone voice, upsampled to the target rate
        Voice("kal16", "flite", "kal16"),
        Voice("awb", "flite", "awb"),
        Voice("rms", "flite", "rms"),
        Voice("slt", "flite", "slt"),
        Voice("kal_diphone", "festival", "kal_diphone"),
        Voice("slt_hts", "festival", "cmu_us_slt_arctic_hts"),  # 32 kHz, resampled
    ]
}


@dataclass(frozen=True)
class _Job:
    voice: Voice
    utterances: list[tuple[str, str]]  # (utt_id, text)


@dataclass
class CorpusSummary:
    """What a corpus build produced.

    Attributes:
        rows: One (path relative to OUT, speaker, text, seconds) per written utterance.
        failures: Voice name -> why it was left out.
    """

    rows: list[tuple[str, str, str, float]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(row[3] for row in self.rows)


def read_sentences(path: str | Path | None = None) -> list[str]:
    """Sentences from a text file, one a line; blank lines and `#` comments are skipped."""
    path = Path(path) if path is not None else SENTENCES
    if not path.is_file():
        raise CorpusError(f"{path}: no such sentence file")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    sentences = [line for line in lines if line and not line.startswith("#")]
    if not sentences:
        raise CorpusError(f"{path}: contains no sentences")
    return sentences


def resolve_voices(names: Sequence[str] | None) -> list[Voice]:
    """The voices called `names` (all of them when None), in the order given."""
    if not names:
        return list(VOICES.values())
    unknown = [name for name in names if name not in VOICES]
    if unknown:
        raise CorpusError(f"unknown voice(s) {', '.join(unknown)}; known: {', '.join(VOICES)}")
    return [VOICES[name] for name in dict.fromkeys(names)]


def build_corpus(
    out: str | Path,
    voices: Sequence[Voice],
    sentences: Sequence[str],
    *,
    minutes: float = 10.0,
    max_utterances: int | None = None,
    sample_rate: int = 16000,
    seed: int = 0,
    workers: int = 2,
) -> CorpusSummary:
    """Synthesise about `minutes` of speech (or `max_utterances`, whichever comes first).

    Synthesis runs in up to `workers` synthesiser processes at once; the threads that drive
    them only resample and write files.

    Raises:
        CorpusError: if OUT is not empty, nothing is asked for, or no voice works at all.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out}: exists and is not empty; choose a new folder")
    if minutes <= 0 or (max_utterances is not None and max_utterances <= 0) or workers < 1:
        raise CorpusError("--minutes, --utterances and --workers must be positive")
    if not sentences or not voices:
        raise CorpusError("no sentences or no voices to synthesise")
    out.mkdir(parents=True, exist_ok=True)
    order = list(sentences)
    random.Random(seed).shuffle(order)
    schedule = _Schedule(list(voices), order, minutes * 60.0, max_utterances, workers)
    for voice in voices:
        problem = _check_voice(voice)
        if problem:
            schedule.drop(voice, problem)
    _synthesize_all(schedule, out, sample_rate, workers)
    if not schedule.summary.rows:
        reasons = "; ".join(f"{name}: {why}" for name, why in schedule.summary.failures.items())
        raise CorpusError(f"no voice produced any audio ({reasons})")
    _write_manifest(out / "manifest.csv", schedule.summary.rows)
    return schedule.summary


def _synthesize_all(schedule: _Schedule, out: Path, sample_rate: int, workers: int) -> None:
    """Run the schedule's jobs, at most `workers` at once, recording each as it finishes."""
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(unit="utt", leave=False) as bar:
        running: set[Future] = set()
        while True:
            while len(running) < workers and (job := schedule.next_job()):
                running.add(pool.submit(_synthesize, job, out, sample_rate))
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, rows, problem = future.result()
                schedule.record(job, rows, problem)
                bar.update(len(rows))


class _Schedule:
    """Deals sentences to voices in turn and decides when the corpus is long enough."""

    def __init__(self, voices, sentences, target_seconds, max_utterances, workers) -> None:
        self.voices = voices
        self.sentences = sentences
        self.target_seconds = target_seconds
        self.max_utterances = max_utterances
        self.workers = workers
        self.summary = CorpusSummary()
        self.next_index = dict.fromkeys((voice.name for voice in voices), 0)
        self.in_flight = 0  # utterances handed out and not yet recorded

    def drop(self, voice: Voice, problem: str) -> None:
        self.summary.failures.setdefault(voice.name, problem)

    def record(self, job: _Job, rows: list, problem: str | None) -> None:
        self.in_flight -= len(job.utterances)
        self.summary.rows.extend(rows)
        if problem:
            self.drop(job.voice, problem)

    def next_job(self) -> _Job | None:
        live = [voice for voice in self.voices if voice.name not in self.summary.failures]
        remaining = self._remaining_utterances()
        if not live or remaining <= 0:
            return None
        # The voice with the fewest utterances goes next, so speakers stay balanced.
        voice = min(live, key=lambda candidate: self.next_index[candidate.name])
        # Small batches near the end keep the corpus close to the asked length.
        size = max(1, min(MAX_BATCH, math.ceil(remaining / len(live))))
        utterances = [self._take(voice) for _ in range(size)]
        self.in_flight += size
        return _Job(voice, utterances)

    def _remaining_utterances(self) -> int:
        done = len(self.summary.rows)
        mean = max(self.summary.seconds / done, 0.1) if done else FIRST_GUESS_SECONDS
        remaining = math.ceil((self.target_seconds - self.summary.seconds) / mean)
        if self.max_utterances is not None:
            remaining = min(remaining, self.max_utterances - done)
        return remaining - self.in_flight

    def _take(self, voice: Voice) -> tuple[str, str]:
        """The voice's next (utt_id, sentence).

        Voice v's k-th utterance reads sentence k * V + v, shifted by one per pass through the
        list, so that every voice reaches every sentence even when V divides the list length.
        """
        k = self.next_index[voice.name]
        self.next_index[voice.name] += 1
        position = k * len(self.voices) + self.voices.index(voice)
        text = self.sentences[(position + position // len(self.sentences)) % len(self.sentences)]
        return f"{voice.name}_{k + 1:04d}", text


def _check_voice(voice: Voice) -> str | None:
    """Why `voice` cannot work here, or None. flite falls back to a default voice silently."""
    if voice.engine != "flite":
        return None
    try:
        listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"flite is not usable ({error})"
    if voice.engine_voice not in listing.stdout.split():
        return f"flite has no voice {voice.engine_voice!r} (flite -lv: {listing.stdout.strip()})"
    return None


def _synthesize(job: _Job, out: Path, sample_rate: int) -> tuple[_Job, list, str | None]:
    """Synthesise one job; returns the rows written and, if the voice failed, why."""
    rows = []
    speaker_dir = out / job.voice.name
    with tempfile.TemporaryDirectory(prefix="corpus-") as temp:
        raw = [Path(temp) / f"{utt_id}.wav" for utt_id, _ in job.utterances]
        try:
            if job.voice.engine == "flite":
                for (_, text), path in zip(job.utterances, raw, strict=True):
                    _run(["flite", "-voice", job.voice.engine_voice, "-t", text, "-o", str(path)])
            else:
                _run(["festival", "-b", _festival_script(job, raw, Path(temp))])
            for (utt_id, text), path in zip(job.utterances, raw, strict=True):
                audio = load_audio(path, sample_rate)
                speaker_dir.mkdir(exist_ok=True)  # only now: a failing voice leaves no folder
                save_audio(speaker_dir / f"{utt_id}.wav", audio, sample_rate)
                (speaker_dir / f"{utt_id}.txt").write_text(text + "\n", encoding="utf-8")
                seconds = round(audio.numel() / sample_rate, 3)
                rows.append((f"{job.voice.name}/{utt_id}.wav", job.voice.name, text, seconds))
        except (OSError, subprocess.SubprocessError, AudioError) as error:
            return job, rows, f"{job.voice.engine} failed: {error}"
    return job, rows, None


def _festival_script(job: _Job, raw: list[Path], temp: Path) -> str:
    """A festival script that selects the voice and saves each sentence as a RIFF wav."""
    lines = [f"(voice_{job.voice.engine_voice})"]
    for (_, text), path in zip(job.utterances, raw, strict=True):
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" \'riff)')
    script = temp / "job.scm"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(script)


def _run(command: list[str]) -> None:
    """Run a synthesiser; a non-zero exit or a hang raises with its last line of output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise subprocess.SubprocessError(
            f"exit code {result.returncode}: {message[-1] if message else 'no output'}"
        )


def _write_manifest(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    """manifest.csv sorted by path, written to a temp file and renamed into place."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "speaker", "text", "seconds"])
        writer.writerows(sorted(rows))
    os.replace(temp, path)
