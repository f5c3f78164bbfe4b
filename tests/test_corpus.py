"""The synthetic corpus builder: shipped sentences, the fixture corpus, and real flite runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import soundfile
from conftest import DATA

from training.corpus import (
    VOICES,
    CorpusError,
    Voice,
    build_corpus,
    read_sentences,
    resolve_voices,
)
from training.synthetic import _Schedule
from wavenet.cli import main

FIXTURE = DATA / "corpus"
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None, reason="festival is not installed"
)


def _manifest_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _check_corpus_folder(folder: Path, sample_rate: int) -> list[dict[str, str]]:
    """Every manifest row names a 16-bit mono wav at `sample_rate` and its transcript."""
    rows = _manifest_rows(folder)
    assert rows
    for row in rows:
        wav = folder / row["path"]
        assert wav.parent.name == row["speaker"]
        info = soundfile.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (sample_rate, 1, "PCM_16")
        assert float(row["seconds"]) == pytest.approx(info.frames / sample_rate, abs=1e-3)
        assert wav.with_suffix(".txt").read_text(encoding="utf-8").strip() == row["text"]
    wavs_on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.wav")}
    assert wavs_on_disk == {row["path"] for row in rows}
    return rows


def test_shipped_sentences_are_many_and_varied():
    sentences = read_sentences()
    assert len(sentences) >= 250
    assert len(set(sentences)) == len(sentences)
    assert sum(s.endswith("?") for s in sentences) >= 30
    assert sum(any(ch.isdigit() for ch in s) for s in sentences) >= 10
    lengths = sorted(len(s.split()) for s in sentences)
    assert lengths[0] <= 2 and lengths[-1] >= 25


def test_fixture_corpus_is_small_multi_speaker_and_consistent():
    rows = _check_corpus_folder(FIXTURE, 16000)
    speakers = {row["speaker"] for row in rows}
    assert 3 <= len(speakers) <= 4
    assert all(2 <= sum(r["speaker"] == s for r in rows) <= 3 for s in speakers)
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 1_000_000


def test_unknown_voice_is_a_user_error_naming_it():
    with pytest.raises(CorpusError, match="nosuchvoice"):
        resolve_voices(["kal16", "nosuchvoice"])
    assert [v.name for v in resolve_voices(["slt", "awb", "slt"])] == ["slt", "awb"]
    assert len(resolve_voices(None)) == len(VOICES) == 7


def test_every_voice_reaches_every_sentence_even_when_counts_divide():
    voices = [Voice(f"v{i}", "flite", "kal") for i in range(3)]
    sentences = [f"sentence {i}" for i in range(6)]  # 3 voices divide 6 sentences
    schedule = _Schedule(voices, sentences, 1e9, None, workers=2)
    read = {voice.name: set() for voice in voices}
    for _ in range(12):
        job = schedule.next_job()
        read[job.voice.name].update(text for _, text in job.utterances)
        schedule.record(job, [], None)
    assert all(texts == set(sentences) for texts in read.values())


def test_schedule_stops_at_the_utterance_count_with_balanced_speakers():
    voices = [Voice(f"v{i}", "flite", "kal") for i in range(4)]
    schedule = _Schedule(voices, ["a", "b", "c"], 1e9, 10, workers=2)
    handed_out = []
    while job := schedule.next_job():
        handed_out += [job.voice.name] * len(job.utterances)
        schedule.record(job, [("p", job.voice.name, "t", 1.0)] * len(job.utterances), None)
    assert len(handed_out) == 10
    counts = sorted(handed_out.count(voice.name) for voice in voices)
    assert counts == [2, 2, 3, 3]


def test_corpus_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        build_corpus(tmp_path, [VOICES["kal16"]], ["Hello."], max_utterances=1)


@needs_flite
def test_wavenet_corpus_command_with_real_flite(tmp_path, capsys):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("# comment\nHello there.\nIs it nine o'clock?\n\nThree apples.\n")
    out = tmp_path / "corpus"
    argv = ["corpus", str(out), "--voices", "kal", "kal16", "--utterances", "4"]
    assert main([*argv, "--sentences", str(sentences), "--sample-rate", "16000"]) == 0
    rows = _check_corpus_folder(out, 16000)  # kal speaks at 8 kHz: resampled
    assert sorted(row["speaker"] for row in rows) == ["kal", "kal", "kal16", "kal16"]
    assert {row["text"] for row in rows} <= {"Hello there.", "Is it nine o'clock?", "Three apples."}
    assert all(float(row["seconds"]) > 0.3 for row in rows)
    assert "wrote 4 utterance(s)" in capsys.readouterr().err


@needs_flite
def test_corpus_stops_near_the_asked_minutes(tmp_path):
    summary = build_corpus(tmp_path / "c", [VOICES["kal16"]], read_sentences(), minutes=0.1)
    assert 6.0 <= summary.seconds < 20.0
    assert _check_corpus_folder(tmp_path / "c", 16000)


@needs_flite
@needs_festival
def test_a_failing_voice_is_reported_and_skipped(tmp_path):
    voices = [
        Voice("ghost_flite", "flite", "no_such_voice"),
        VOICES["kal16"],
        Voice("ghost_festival", "festival", "no_such_voice"),
    ]
    summary = build_corpus(tmp_path / "c", voices, ["Hello.", "Goodbye."], max_utterances=2)
    assert set(summary.failures) == {"ghost_flite", "ghost_festival"}
    assert "no_such_voice" in summary.failures["ghost_flite"]
    assert "festival failed" in summary.failures["ghost_festival"]
    rows = _check_corpus_folder(tmp_path / "c", 16000)
    assert [row["speaker"] for row in rows] == ["kal16", "kal16"]
    listing = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert listing == ["kal16", "manifest.csv", "report.json"]
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    skipped = {item["input"]: item["reason"] for item in report["skipped"]}
    assert skipped == {f"voice {name}": summary.failures[name] for name in summary.failures}


@needs_festival
def test_festival_voices_including_32_khz_hts_come_out_at_the_target_rate(tmp_path):
    voices = [VOICES["kal_diphone"], VOICES["slt_hts"]]
    summary = build_corpus(
        tmp_path / "c", voices, ["Good morning."], max_utterances=2, sample_rate=22050
    )
    assert summary.failures == {}
    rows = _check_corpus_folder(tmp_path / "c", 22050)
    assert sorted(row["speaker"] for row in rows) == ["kal_diphone", "slt_hts"]
