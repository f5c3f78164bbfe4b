"""Corpus sources: Asterisk's G.722 prompts, KLettres' letters, festival's voices beyond English,
the manifest's new columns and report.json, on the Debian packages the Makefile installs."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import soundfile

from training import recorded
from training.corpus import SOURCES, CorpusError, build_corpus
from training.layouts import find_sources
from training.recorded import index_asterisk, index_klettres
from training.recorded_audio import decode_g722, split_at_pauses
from training.synthetic import INTL_VOICES, TEXT, VOICES, read_sentences
from wavenet.cli import main

ALLISON = recorded.ASTERISK_ROOT / "en_US_f_Allison"
COLUMNS = ["path", "speaker", "text", "seconds", "source", "language", "licence"]


def _needs(package: str, path: Path) -> None:
    if not path.exists():
        pytest.skip(f"Debian package {package} is not installed ({path} is missing)")


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_a_real_asterisk_prompt_decodes_to_16_khz_speech():
    _needs("asterisk-core-sounds-en-g722", ALLISON)
    data = (ALLISON / "agent-pass.g722").read_bytes()
    audio = decode_g722(data)
    assert audio.dtype == np.float32 and audio.shape == (2 * len(data),)  # 8,000 bytes/s
    assert len(data) / 8000 == pytest.approx(audio.size / 16000)
    assert 0.3 < np.abs(audio).max() < 1.0 and np.sqrt(np.mean(audio**2)) > 0.05
    # Read at the wrong rate, Allison's voice would sit an octave off: 150-300 Hz is hers.
    pitch = parselmouth.Sound(audio.astype(np.float64), 16000).to_pitch().selected_array
    voiced = pitch["frequency"][pitch["frequency"] > 0]
    assert voiced.size > 50 and 150 < np.median(voiced) < 300


def test_installed_recordings_hold_150_minutes_over_8_speakers_each_file_once():
    _needs("asterisk-core-sounds-{en,es,fr,it,ru}-g722", recorded.ASTERISK_ROOT)
    _needs("klettres-data", recorded.KLETTRES_ROOT)
    asterisk, asterisk_skipped = index_asterisk()
    klettres, klettres_skipped = index_klettres()
    clips = asterisk + klettres
    assert sum(clip.seconds for clip in clips) >= 150 * 60
    assert len({clip.speaker for clip in clips}) >= 8
    paths = [clip.path for clip in clips]
    assert len(set(paths)) == len(paths) and all(os.path.realpath(p) == str(p) for p in paths)
    assert len({clip.utt_id for clip in clips}) == len(clips)
    assert all(clip.seconds == clip.path.stat().st_size / 8000 for clip in asterisk)
    by_speaker = {clip.speaker: clip for clip in asterisk}
    assert {(c.language, c.licence) for c in asterisk if c.speaker == "en_US_f_Allison"} == {
        ("en", "CC-BY-SA-3.0"),
        ("es", "CC-BY-SA-3.0"),  # Allison reads both: one speaker
    }
    assert by_speaker["it_IT_m_Carlo"].licence == "CC-BY-3.0"
    reasons = {Path(item["input"]).name: item["reason"] for item in asterisk_skipped}
    assert reasons["beep.g722"] == "a tone or beep, not speech"
    assert reasons["ascending-2tone.g722"] == "a tone or beep, not speech"
    assert "at-tone-time-exactly.g722" not in reasons
    assert {c.licence for c in klettres} == {"GPL-2+"}
    assert next(c for c in klettres if c.utt_id == "klettres_hu_alpha_a1").text == "A"
    tts = [item for item in klettres_skipped if "text-to-speech" in item["reason"]]
    assert [Path(item["input"]).name for item in tts] == ["nn"]


def test_symlinked_voice_folders_are_read_once_and_non_speech_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(recorded, "DEBIAN_DOC", tmp_path / "doc")
    root = tmp_path / "sounds"
    files = {
        "en_US_f_Kim/hello.g722": 800,
        "en_US_f_Kim/digits/1.g722": 400,
        "en_US_f_Kim/beep.g722": 80,
        "en_US_f_Kim/silence/1.g722": 8000,
        "en_US_f_Kim/empty.g722": 0,
        "en_US_f_Kim/hello.gsm": 33,
        "es_MX_f_Kim/hola.g722": 1600,
        "fr_CA_m_Leo/bonjour.g722": 2400,
    }
    for relative, size in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"\x00" * size)
    (root / "en").symlink_to("en_US_f_Kim")
    (root / "fr").symlink_to(root / "fr_CA_m_Leo")
    clips, skipped = index_asterisk(root)
    got = sorted((c.utt_id, c.speaker, c.language, c.seconds) for c in clips)
    assert got == [
        ("en_US_f_Kim_digits_1", "en_US_f_Kim", "en", 0.05),
        ("en_US_f_Kim_es_hola", "en_US_f_Kim", "es", 0.2),
        ("en_US_f_Kim_hello", "en_US_f_Kim", "en", 0.1),
        ("fr_CA_m_Leo_bonjour", "fr_CA_m_Leo", "fr", 0.3),
    ]
    assert all(c.licence.startswith("unknown (no ") for c in clips)
    reasons = sorted((Path(item["input"]).name, item["reason"]) for item in skipped)
    assert [name for name, _ in reasons] == ["1.g722", "beep.g722", "empty.g722", "hello.gsm"]
    assert dict(reasons)["empty.g722"] == "empty file"


def test_long_recordings_are_cut_at_their_pauses():
    rate, rng = 1000, np.random.default_rng(0)
    speech = [rng.uniform(-0.5, 0.5, rate * seconds) for seconds in (9, 8, 12, 7)]
    gap = np.zeros(rate // 5)  # 200 ms pauses between the phrases
    audio = np.concatenate([speech[0], gap, speech[1], gap, speech[2], gap, speech[3]])
    pieces = split_at_pauses(audio, rate, max_seconds=15.0)
    assert np.array_equal(np.concatenate(pieces), audio)
    assert len(pieces) >= 3 and all(piece.size <= 15 * rate for piece in pieces)
    for before, after in itertools.pairwise(pieces):  # each cut fell in a pause
        assert np.all(before[-20:] == 0) and np.all(after[:20] == 0)
    (short,) = split_at_pauses(audio[: 15 * rate], rate, 15.0)
    assert np.array_equal(short, audio[: 15 * rate])


def test_recorded_build_writes_manifest_columns_report_and_prepare_layout(tmp_path):
    _needs("asterisk-core-sounds-*-g722", recorded.ASTERISK_ROOT)
    _needs("klettres-data", recorded.KLETTRES_ROOT)
    out = tmp_path / "corpus"
    summary = build_corpus(out, sources=["asterisk", "klettres"], recorded_minutes=0.25)
    rows = _rows(out)
    assert {row["source"] for row in rows} == {"asterisk", "klettres"}
    assert len({row["speaker"] for row in rows}) >= 8  # speakers are taken in turn
    for row in rows:
        info = soundfile.info(out / row["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert float(row["seconds"]) == pytest.approx(info.frames / 16000, abs=1e-3)
        assert row["licence"] in {"CC-BY-SA-3.0", "CC-BY-3.0", "GPL-2+"}
        assert row["source"] != "klettres" or row["text"]  # letters carry their transcript
    report = json.loads((out / "report.json").read_text())
    for source in ("asterisk", "klettres"):
        entry = report["sources"][source]
        assert 0.24 <= entry["minutes"] < 0.75
        assert entry["clips"] == sum(row["source"] == source for row in rows)
    assert report["total"]["recorded_minutes"] == pytest.approx(summary.seconds / 60, abs=0.01)
    reasons = {item["reason"] for item in report["skipped"]}
    assert {"a tone or beep, not speech", "silence, not speech"} <= reasons
    layout, sources, dropped = find_sources(out)
    assert layout == "vctk" and dropped == []
    assert sorted(s.relative for s in sources) == sorted(row["path"] for row in rows)


def test_a_festival_voice_beyond_english_speaks_its_language(tmp_path):
    _needs("festvox-czech-dita", Path("/usr/share/festival/voices/czech/czech_dita"))
    summary = build_corpus(tmp_path / "c", [INTL_VOICES["cs_dita"]], max_utterances=1)
    assert summary.failures == {}
    (row,) = _rows(tmp_path / "c")
    assert (row["source"], row["language"], row["licence"]) == ("festival-intl", "cs", "GPL-3+")
    assert row["text"] in read_sentences(TEXT / "sentences_cs.txt")
    audio, rate = soundfile.read(tmp_path / "c" / row["path"])
    # Text in the wrong encoding is spelled out byte by byte: 0.3 s a character, not 0.08.
    assert 0.03 < len(audio) / rate / len(row["text"]) < 0.15
    assert np.sqrt(np.mean(audio**2)) > 0.02


def test_voices_below_16_khz_are_left_out_unless_named(tmp_path):
    if shutil.which("flite") is None:
        pytest.skip("Debian package flite is not installed")
    summary = build_corpus(tmp_path / "c", sources=["synthetic"], max_utterances=2)
    assert summary.failures["kal"] == "speaks at 8000 Hz, below 16000 Hz (name it to use it)"
    assert "kal" not in {row.speaker for row in summary.rows} and len(summary.rows) == 2
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert {"source": "synthetic", "input": "voice kal", "reason": summary.failures["kal"]} in (
        report["skipped"]
    )


@pytest.mark.parametrize("language", ["cs", "fi", "it", "ru", "ca"])
def test_shipped_sentences_fit_each_voice_of_their_language(language):
    sentences = read_sentences(TEXT / f"sentences_{language}.txt")
    assert len(sentences) >= 40 and len(set(sentences)) == len(sentences)
    assert not any(re.search(r"\d", sentence) for sentence in sentences)
    voices = [voice for voice in INTL_VOICES.values() if voice.language == language]
    assert voices
    for voice in voices:
        for sentence in sentences:
            sentence.encode(voice.encoding)  # raises if the voice cannot be given it


GPL2 = "Free Software Foundation; either version 2 of the License"
LGPL2 = (
    "Lesser General Public License as published by the Free Software Foundation; either version 2"
)
FREE = "Permission is hereby granted, free of charge"
LICENCE_EVIDENCE = {  # voice -> (Debian package, what its copyright file says, licence)
    "cs_dita": ("festvox-czech-dita", "either version 3 of the License, or", "GPL-3+"),
    "fi_mv": ("festvox-suopuhe-mv", LGPL2, "LGPL-2+"),
    "fi_lj": ("festvox-suopuhe-lj", LGPL2, "LGPL-2+"),
    "it_lp": ("festvox-italp16k", GPL2, "GPL-2+"),
    "it_pc": ("festvox-itapc16k", GPL2, "GPL-2+"),
    "ru_nsh": ("festvox-ru", "License: BSD-like", "BSD-like (festvox)"),
    "ca_ona": ("festvox-ca-ona-hts", "License: LGPL-2.1+", "LGPL-2.1+"),
    "slt_hts": ("festvox-us-slt-hts", "License: EST-2003", "EST-2003 (BSD-like)"),
    "kal_diphone": ("festvox-kallpc16k", FREE, "BSD-like (festvox)"),
    "kal16": ("flite", FREE, "BSD-like (CMU flite)"),
}


@pytest.mark.parametrize("voice", sorted(LICENCE_EVIDENCE))
def test_voice_licences_are_what_the_debian_copyright_files_say(voice):
    package, evidence, licence = LICENCE_EVIDENCE[voice]
    copyright_file = Path("/usr/share/doc") / package / "copyright"
    _needs(package, copyright_file)
    assert evidence in " ".join(
        copyright_file.read_text(encoding="utf-8", errors="replace").split()
    )
    assert (VOICES | INTL_VOICES)[voice].licence == licence


def test_corpus_command_sources_and_their_errors(tmp_path, capsys):
    parser_choices = _corpus_parser_choices()
    assert tuple(parser_choices) == SOURCES
    assert main(["corpus", str(tmp_path / "a"), "--sources", "asterisk", "--voices", "kal16"]) == 2
    assert "voice kal16 belongs to synthetic" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    with pytest.raises(CorpusError, match="unknown source"):
        build_corpus(tmp_path / "b", sources=["radio"])
    with pytest.raises(CorpusError, match="must be > 0"):
        build_corpus(tmp_path / "b", sources=["asterisk"], recorded_minutes=0)


def _corpus_parser_choices() -> list[str]:
    import argparse

    from training.commands import _add_corpus

    commands = argparse.ArgumentParser().add_subparsers()
    _add_corpus(commands)
    corpus = commands.choices["corpus"]
    return next(action.choices for action in corpus._actions if action.dest == "sources")
