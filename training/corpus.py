"""`wavenet corpus`: a multi-speaker speech corpus from what Debian installs, in one folder.

Sources (`--sources`, all four by default):
- `asterisk`: Asterisk's telephone prompts, recorded by professional speakers (`recorded.py`).
- `klettres`: KLettres' letters and syllables, recorded in about 20 languages (`recorded.py`).
- `synthetic`: English flite and festival voices reading the shipped sentences (`synthetic.py`).
- `festival-intl`: festival's Czech, Finnish, Italian, Russian and Catalan voices, each reading
  the shipped sentences of its language.
The recorded sources give all they hold (or `recorded_minutes` each); each synthesised one gives
about `minutes`. Anything below 16 kHz is left out (flite's kal unless named). Recordings longer
than `MAX_CLIP_SECONDS` are cut at pauses, so that `wavenet prepare` keeps them.

The output is the VCTK-like layout that `wavenet prepare` reads:

    OUT/<speaker>/<utt_id>.wav    16-bit PCM, mono, at the target sample rate
    OUT/<speaker>/<utt_id>.txt    the transcript, where the source has one
    OUT/manifest.csv              path, speaker, text, seconds, source, language, licence
    OUT/report.json               minutes, clips and speakers per source; every skipped input

Every input left out (a tone, an empty or unreadable file, a voice that fails) is listed in
report.json with the reason; manifest.csv is written last, once the corpus is complete.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from training.corpus_summary import Clip, CorpusError, CorpusSummary
from training.dataset_format import write_text_atomic
from training.recorded import MIN_SOURCE_RATE, index_asterisk, index_klettres, select_clips
from training.recorded_audio import write_recording
from training.synthetic import (
    INTL_VOICES,
    TEXT,
    VOICES,
    Voice,
    read_sentences,
    resolve_voices,
    synthesize,
)

__all__ = [
    "SOURCES",
    "VOICES",
    "CorpusError",
    "CorpusSummary",
    "Voice",
    "build_corpus",
    "read_sentences",
    "resolve_voices",
    "run",
]

RECORDED = {"asterisk": index_asterisk, "klettres": index_klettres}
SYNTHESISED = {"synthetic": VOICES, "festival-intl": INTL_VOICES}
SOURCES = (*RECORDED, *SYNTHESISED)


def build_corpus(
    out: str | Path,
    voices: Sequence[Voice] | None = None,
    sentences: Sequence[str] | None = None,
    *,
    sources: Sequence[str] | None = None,
    minutes: float = 10.0,
    max_utterances: int | None = None,
    recorded_minutes: float | None = None,
    sample_rate: int = 16000,
    seed: int = 0,
    workers: int = 2,
) -> CorpusSummary:
    """Build a corpus in `out` from `sources`.

    Args:
        voices: Synthetic voices to use; naming them also lets a voice below 16 kHz in. None:
            every voice of each synthesised source.
        sentences: What the English voices read (default: the shipped sentences).
        sources: Names from `SOURCES`; None: the sources of `voices`, or all of them.
        minutes: About this much from each synthesised source.
        max_utterances: At most this many clips from each source.
        recorded_minutes: At most about this much from each recorded source (None: all).

    Raises:
        CorpusError: if OUT is not empty, a request is invalid, or no source gives any audio.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out}: exists and is not empty; choose a new folder")
    amounts = [minutes, workers, *(n for n in (max_utterances, recorded_minutes) if n is not None)]
    if min(amounts) <= 0:
        raise CorpusError("--minutes, --utterances, --recorded-minutes and --workers must be > 0")
    if (voices is not None and not voices) or (sentences is not None and not sentences):
        raise CorpusError("no sentences or no voices to synthesise")
    sources = _resolve_sources(sources, voices)
    out.mkdir(parents=True, exist_ok=True)
    summary = CorpusSummary()
    for source in sources:
        if source in RECORDED:
            cap = recorded_minutes * 60.0 if recorded_minutes is not None else None
            summary.merge(_recorded(source, out, cap, max_utterances, sample_rate, seed))
        else:
            named = [voice for voice in voices or [] if voice.source == source]
            limits = dict(target_seconds=minutes * 60.0, max_utterances=max_utterances)
            summary.merge(
                _synthesised(source, out, named, sentences, limits, sample_rate, seed, workers)
            )
    if not summary.rows:
        reasons = "; ".join(f"{item['input']}: {item['reason']}" for item in summary.skipped)
        raise CorpusError(f"no source produced any audio ({reasons})")
    write_text_atomic(out / "report.json", json.dumps(_report(summary, sample_rate), indent=1))
    _write_manifest(out / "manifest.csv", summary.rows)
    return summary


def _resolve_sources(sources: Sequence[str] | None, voices: Sequence[Voice] | None) -> list[str]:
    """The sources asked for, in `SOURCES` order, checked against the voices named."""
    if sources is None:
        sources = {voice.source for voice in voices} if voices else SOURCES
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise CorpusError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    for voice in voices or []:
        if voice.source not in sources:
            raise CorpusError(f"voice {voice.name} belongs to {voice.source}, not asked for")
    return [source for source in SOURCES if source in sources]


def _synthesised(source, out, named, sentences, limits, sample_rate, seed, workers):
    """One synthesised source: the voices named for it, or all of its voices at 16 kHz or
    more; every voice that fails is listed in `skipped`."""
    voices = named or list(SYNTHESISED[source].values())
    part = synthesize(
        out,
        voices,
        _sentences_by_voice(voices, sentences, seed),
        **limits,
        sample_rate=sample_rate,
        workers=workers,
        min_rate=0 if named else MIN_SOURCE_RATE,
    )
    for name, reason in part.failures.items():
        part.skip(source, f"voice {name}", reason)
    return part


def _sentences_by_voice(voices, english: Sequence[str] | None, seed: int) -> dict[str, list]:
    """Voice name -> its shuffled sentences: `english` (or the shipped ones) for English voices,
    `training/text/sentences_<language>.txt` for the others."""
    texts = {"en": list(english) if english is not None else read_sentences()}
    for voice in voices:
        if voice.language not in texts:
            texts[voice.language] = read_sentences(TEXT / f"sentences_{voice.language}.txt")
    return {voice.name: _shuffled(texts[voice.language], seed) for voice in voices}


def _shuffled(sentences: Sequence[str], seed: int) -> list[str]:
    order = list(sentences)
    random.Random(seed).shuffle(order)
    return order


def _recorded(source, out: Path, cap_seconds, max_clips, sample_rate, seed) -> CorpusSummary:
    """Index, choose and write one recorded source; every file left out is in `skipped`."""
    clips, skipped = RECORDED[source]()
    summary = CorpusSummary(skipped=skipped)
    try:
        for clip in tqdm(select_clips(clips, cap_seconds, max_clips, seed), leave=False):
            write_recording(clip, out, sample_rate, summary)
    except CorpusError as error:  # the decoder is missing: the whole source is left out
        summary.skip(source, source, str(error))
    return summary


def _report(summary: CorpusSummary, sample_rate: int) -> dict:
    """report.json: per-source minutes, clips, speakers (with minutes), languages, licences;
    totals; and every skipped input with its reason."""
    sources: dict[str, dict] = {}
    for row in summary.rows:
        entry = sources.setdefault(row.source, {"clips": 0, "minutes": 0.0, "speakers": {}})
        entry["clips"] += 1
        entry["minutes"] += row.seconds / 60
        entry["speakers"][row.speaker] = entry["speakers"].get(row.speaker, 0.0) + row.seconds / 60
        entry.setdefault("languages", set()).add(row.language)
        entry.setdefault("licences", set()).add(row.licence)
    for entry in sources.values():
        entry["minutes"] = round(entry["minutes"], 2)
        entry["speakers"] = {name: round(m, 2) for name, m in sorted(entry["speakers"].items())}
        entry["languages"], entry["licences"] = (
            sorted(entry["languages"]),
            sorted(entry["licences"]),
        )
    recorded = sum(row.seconds for row in summary.rows if row.source in RECORDED) / 60
    total = {
        "clips": len(summary.rows),
        "minutes": round(summary.seconds / 60, 2),
        "recorded_minutes": round(recorded, 2),
        "speakers": len({row.speaker for row in summary.rows}),
    }
    return {
        "sample_rate": sample_rate,
        "total": total,
        "sources": sources,
        "skipped": summary.skipped,
    }


def _write_manifest(path: Path, rows: list[Clip]) -> None:
    """manifest.csv sorted by path, written to a temp file and renamed into place."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(Clip._fields)
    writer.writerows(sorted(rows))
    write_text_atomic(path, text.getvalue())


def run(args: argparse.Namespace) -> None:
    """`wavenet corpus`: build the corpus the arguments ask for and say what it holds."""
    summary = build_corpus(
        args.out,
        resolve_voices(args.voices) if args.voices else None,
        read_sentences(args.sentences) if args.sentences else None,
        sources=args.sources,
        minutes=args.minutes,
        max_utterances=args.utterances,
        recorded_minutes=args.recorded_minutes,
        sample_rate=args.sample_rate,
        seed=args.seed,
        workers=args.workers,
    )
    report = _report(summary, args.sample_rate)
    for name, entry in report["sources"].items():
        speakers = len(entry["speakers"])
        line = (
            f"{name}: {entry['clips']} clip(s), {entry['minutes']:.1f} min, {speakers} speaker(s)"
        )
        print(line, file=sys.stderr)
    for name, reason in summary.failures.items():
        print(f"voice {name} skipped: {reason}", file=sys.stderr)
    print(
        f"wrote {len(summary.rows)} utterance(s), {summary.seconds / 60:.1f} min, "
        f"{report['total']['speakers']} speaker(s) to {args.out}; report.json lists "
        f"{len(summary.skipped)} skipped input(s)",
        file=sys.stderr,
    )
