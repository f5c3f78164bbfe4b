"""Synthetic speakers: Debian's flite and festival voices reading sentences the project ships.

Each voice is one speaker. English voices (`VOICES`, the `synthetic` source) read
`training/text/sentences.txt` or any text file, one sentence per line; festival's voices in
other languages (`INTL_VOICES`, the `festival-intl` source) read
`training/text/sentences_<language>.txt`, encoded as the voice expects (ISO-8859-2 for Czech,
ISO-8859-1 for Finnish and Italian, ISO-8859-15 for Catalan, UTF-8 for Russian: a wrong one
makes festival spell out the bytes). Sentences are shuffled with a seed and dealt out to the
voices in turn until the source holds about the requested number of minutes.

A voice that fails to synthesise, or speaks below the minimum sample rate, is reported and left
out; the others go on.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import soundfile
from tqdm import tqdm

from training.corpus_summary import Clip, CorpusError, CorpusSummary
from wavenet.audio import load_audio, save_audio
from wavenet.errors import AudioError

__all__ = [
    "INTL_VOICES",
    "VOICES",
    "Voice",
    "read_sentences",
    "resolve_voices",
    "synthesize",
]

TEXT = Path(__file__).parent / "text"
SENTENCES = TEXT / "sentences.txt"
MAX_BATCH = 8  # sentences per synthesiser call: festival's start-up (~0.5 s) is paid once
FIRST_GUESS_SECONDS = 3.0  # expected length of one utterance until real ones are measured


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        name: Speaker name, used for the folder and the utterance ids.
        engine: Which synthesiser reads the text.
        engine_voice: The voice's name inside the engine (`flite -voice X`, `(voice_X)`).
        language: ISO 639-1 code of the sentences it reads.
        encoding: The text encoding the engine expects for this voice.
        source: The corpus source the voice belongs to.
        licence: The voice's licence, from its Debian package's copyright file.
    """

    name: str
    engine: Literal["flite", "festival"]
    engine_voice: str
    language: str = "en"
    encoding: str = "utf-8"
    source: str = "synthetic"
    licence: str = ""


FLITE = "BSD-like (CMU flite)"
VOICES = {
    voice.name: voice
    for voice in [
        Voice("kal", "flite", "kal", licence=FLITE),  # 8 kHz: left out unless named
        Voice("kal16", "flite", "kal16", licence=FLITE),
        Voice("awb", "flite", "awb", licence=FLITE),
        Voice("rms", "flite", "rms", licence=FLITE),
        Voice("slt", "flite", "slt", licence=FLITE),
        Voice("kal_diphone", "festival", "kal_diphone", licence="BSD-like (festvox)"),
        Voice("slt_hts", "festival", "cmu_us_slt_arctic_hts", licence="EST-2003 (BSD-like)"),
    ]
}


def _festival_intl(name: str, engine_voice: str, language: str, encoding: str, licence: str):
    return Voice(name, "festival", engine_voice, language, encoding, "festival-intl", licence)


INTL_VOICES = {
    voice.name: voice
    for voice in [
        _festival_intl("cs_dita", "czech_dita", "cs", "iso-8859-2", "GPL-3+"),
        _festival_intl("fi_mv", "hy_fi_mv_diphone", "fi", "iso-8859-1", "LGPL-2+"),
        _festival_intl("fi_lj", "suo_fi_lj_diphone", "fi", "iso-8859-1", "LGPL-2+"),
        _festival_intl("it_lp", "lp_diphone", "it", "iso-8859-1", "GPL-2+"),
        _festival_intl("it_pc", "pc_diphone", "it", "iso-8859-1", "GPL-2+"),
        _festival_intl("ru_nsh", "msu_ru_nsh_clunits", "ru", "utf-8", "BSD-like (festvox)"),
        _festival_intl("ca_ona", "upc_ca_ona_hts", "ca", "iso-8859-15", "LGPL-2.1+"),
    ]
}


@dataclass(frozen=True)
class _Job:
    voice: Voice
    utterances: list[tuple[str, str]]  # (utt_id, text)


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
    """The voices called `names` (English or not), in the order given; all English ones when
    None."""
    if not names:
        return list(VOICES.values())
    known = VOICES | INTL_VOICES
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CorpusError(f"unknown voice(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in dict.fromkeys(names)]


def synthesize(
    out: Path,
    voices: Sequence[Voice],
    sentences: Mapping[str, Sequence[str]],
    *,
    target_seconds: float,
    max_utterances: int | None,
    sample_rate: int,
    workers: int,
    min_rate: int = 0,
) -> CorpusSummary:
    """Synthesise about `target_seconds` (or `max_utterances`) with `voices` into `out`.

    Args:
        sentences: Voice name -> the (already shuffled) sentences it reads.
        min_rate: A voice whose synthesiser speaks below this rate (Hz) is left out.

    Synthesis runs in up to `workers` synthesiser processes at once; the threads that drive
    them only resample and write files.
    """
    schedule = _Schedule(list(voices), sentences, target_seconds, max_utterances, workers)
    for voice in voices:
        problem = _check_voice(voice)
        if problem:
            schedule.drop(voice, problem)
    with ThreadPoolExecutor(max_workers=workers) as pool, tqdm(unit="utt", leave=False) as bar:
        running: set[Future] = set()
        while True:
            while len(running) < workers and (job := schedule.next_job()):
                running.add(pool.submit(_synthesize, job, out, sample_rate, min_rate))
            if not running:
                return schedule.summary
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, rows, problem = future.result()
                schedule.record(job, rows, problem)
                bar.update(len(rows))


class _Schedule:
    """Deals sentences to voices in turn and decides when the source is long enough."""

    def __init__(self, voices, sentences, target_seconds, max_utterances, workers) -> None:
        self.voices = voices
        # One list for every voice, or a list per voice name (each reads its own language).
        shared = not isinstance(sentences, Mapping)
        self.sentences = {v.name: sentences if shared else sentences[v.name] for v in voices}
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
        sentences = self.sentences[voice.name]
        position = k * len(self.voices) + self.voices.index(voice)
        text = sentences[(position + position // len(sentences)) % len(sentences)]
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


def _synthesize(
    job: _Job, out: Path, sample_rate: int, min_rate: int
) -> tuple[_Job, list[Clip], str | None]:
    """Synthesise one job; returns the rows written and, if the voice failed, why."""
    rows, voice = [], job.voice
    speaker_dir = out / voice.name
    with tempfile.TemporaryDirectory(prefix="corpus-") as temp:
        raw = [Path(temp) / f"{utt_id}.wav" for utt_id, _ in job.utterances]
        try:
            if voice.engine == "flite":
                for (_, text), path in zip(job.utterances, raw, strict=True):
                    _run(["flite", "-voice", voice.engine_voice, "-t", text, "-o", str(path)])
            else:
                _run(["festival", "-b", _festival_script(job, raw, Path(temp))])
            rate = soundfile.info(raw[0]).samplerate
            if rate < min_rate:
                return job, rows, f"speaks at {rate} Hz, below {min_rate} Hz (name it to use it)"
            for (utt_id, text), path in zip(job.utterances, raw, strict=True):
                audio = load_audio(path, sample_rate)
                speaker_dir.mkdir(exist_ok=True)  # only now: a failing voice leaves no folder
                save_audio(speaker_dir / f"{utt_id}.wav", audio, sample_rate)
                (speaker_dir / f"{utt_id}.txt").write_text(text + "\n", encoding="utf-8")
                seconds = round(audio.numel() / sample_rate, 3)
                path_out = f"{voice.name}/{utt_id}.wav"
                rows.append(
                    Clip(
                        path_out,
                        voice.name,
                        text,
                        seconds,
                        voice.source,
                        voice.language,
                        voice.licence,
                    )
                )
        except (OSError, subprocess.SubprocessError, AudioError, RuntimeError) as error:
            return job, rows, f"{voice.engine} failed: {error}"
        except UnicodeEncodeError as error:
            return job, rows, f"a sentence is not {voice.encoding} text: {error}"
    return job, rows, None


def _festival_script(job: _Job, raw: list[Path], temp: Path) -> str:
    """A festival script, in the voice's encoding, that saves each sentence as a RIFF wav."""
    lines = [f"(voice_{job.voice.engine_voice})"]
    for (_, text), path in zip(job.utterances, raw, strict=True):
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" \'riff)')
    script = temp / "job.scm"
    script.write_bytes(("\n".join(lines) + "\n").encode(job.voice.encoding))
    return str(script)


def _run(command: list[str]) -> None:
    """Run a synthesiser; a non-zero exit or a hang raises with its last line of output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, errors="replace")
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise subprocess.SubprocessError(
            f"exit code {result.returncode}: {message[-1] if message else 'no output'}"
        )
