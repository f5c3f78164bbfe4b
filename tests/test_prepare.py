"""`wavenet prepare`: layouts, the prepared format, F0, dropped files, the splits, the config."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import DATA

from training.config import ConfigError
from training.dataset_format import DatasetError, load_entry, load_f0, read_manifest
from training.prepare import (
    PrepareConfig,
    held_out_ids,
    normalise_level,
    prepare,
    trim_silence,
)
from training.splits import MIN_UNSEEN_UTTERANCES, unseen_speakers
from wavenet.cli import main
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, track_f0

FIXTURE = DATA / "corpus"
FIXTURE_WAVS = sorted(FIXTURE.rglob("*.wav"))


def _tone(path: Path, seconds: float, sample_rate: int, frequency: float = 440.0) -> Path:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, 0.5 * np.sin(2 * math.pi * frequency * t), sample_rate)
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prepare.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, object]:
    """The fixture corpus (VCTK layout) prepared with the default config."""
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(FIXTURE, out)


def test_fixture_corpus_gives_the_documented_format(prepared):
    out, report = prepared
    spec, speakers, entries = read_manifest(out)
    assert spec == FeatureSpec()
    assert json.loads((out / "feature_spec.json").read_text()) == spec.model_dump(mode="json")
    config = PrepareConfig.model_validate_json((out / "prepare_config.json").read_text())
    # Three utterances per speaker are too few to keep a speaker out: no unseen split.
    assert config == PrepareConfig(unseen_speakers=[]) and report.unseen_speakers == []
    assert PitchSpec.model_validate_json((out / "pitch_spec.json").read_text()) == PitchSpec()
    assert speakers == json.loads((out / "speakers.json").read_text())
    assert speakers == sorted(p.name for p in FIXTURE.iterdir() if p.is_dir())
    assert (report.layout, report.kept, report.dropped) == ("vctk", len(FIXTURE_WAVS), 0)
    assert {e.split for e in entries} == {"train", "val"}
    for entry in entries:
        audio, mel = load_entry(out, entry, spec)
        assert entry.samples == entry.frames * spec.hop_length == audio.shape[0]
        assert mel.shape == (spec.n_mels, entry.frames)
        assert torch.equal(spec.extract(torch.from_numpy(audio)), torch.from_numpy(mel))
        assert entry.f0 == f"f0/{entry.id}.npy"
        np.testing.assert_array_equal(load_f0(out, entry), track_f0(audio, spec))
        assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)  # peak -1 dBFS
        assert speakers[entry.speaker_id] == entry.speaker == Path(entry.source).parent.name
        assert entry.text == (FIXTURE / entry.source).with_suffix(".txt").read_text().strip()
    for folder in ("audio", "mel", "f0"):
        on_disk = sorted(p.stem for p in (out / folder).glob("*.npy"))
        assert on_disk == sorted(e.id for e in entries)
    saved = json.loads((out / "report.json").read_text())
    assert (saved["kept"], saved["dropped"], saved["dropped_files"]) == (len(entries), 0, [])
    stats = saved["speaker_stats"]
    assert sorted(stats) == speakers
    for speaker, row in stats.items():
        own = [e for e in entries if e.speaker == speaker]
        f0 = np.concatenate([load_f0(out, e) for e in own])
        voiced = f0[f0 > 0].astype(np.float64)
        assert (row["split"], row["utterances"]) == ("train", len(own))
        assert row["voiced_fraction"] == pytest.approx(voiced.size / f0.size, abs=1e-4)
        assert row["f0_p50"] == pytest.approx(np.median(voiced), abs=0.05)
        assert 50 <= row["f0_p5"] < row["f0_p50"] < row["f0_p95"] <= 800
    minutes = sum(row["minutes"] for row in stats.values())
    assert minutes == pytest.approx(report.seconds / 60, abs=0.005)


def test_ljspeech_layout(tmp_path):
    data = tmp_path / "LJSpeech-1.1"
    (data / "wavs").mkdir(parents=True)
    lines = []
    for number, wav in enumerate(FIXTURE_WAVS[:3], 1):
        shutil.copy(wav, data / "wavs" / f"LJ001-000{number}.wav")
        lines.append(f"LJ001-000{number}|Text no. {number}|Text number {number}")
    lines.append("LJ001-0009|Listed|but missing")
    shutil.copy(FIXTURE_WAVS[3], data / "wavs" / "LJ001-0010.wav")  # not in metadata.csv
    (data / "metadata.csv").write_text("\n".join(lines) + "\n")
    report = prepare(data, tmp_path / "out")
    _, speakers, entries = read_manifest(tmp_path / "out")
    assert (report.layout, speakers) == ("ljspeech", ["LJSpeech-1.1"])
    assert [(e.id, e.text) for e in entries] == [
        (f"LJ001-000{n}", f"Text number {n}") for n in (1, 2, 3)
    ]
    reasons = {d["source"]: d["reason"] for d in report.dropped_files}
    assert set(reasons) == {"wavs/LJ001-0009.wav", "wavs/LJ001-0010.wav"}
    assert "no audio file" in reasons["wavs/LJ001-0009.wav"]
    assert "not listed" in reasons["wavs/LJ001-0010.wav"]


def test_plain_folder_of_wav_flac_ogg_is_one_speaker(tmp_path):
    data = tmp_path / "alice"
    data.mkdir()
    for wav, suffix in zip(FIXTURE_WAVS[:3], (".wav", ".flac", ".ogg"), strict=True):
        audio, rate = soundfile.read(wav)
        soundfile.write(data / f"{wav.stem}{suffix}", audio, rate)
    report = prepare(data, tmp_path / "out")
    _, speakers, entries = read_manifest(tmp_path / "out")
    assert (report.layout, speakers, report.dropped) == ("folder", ["alice"], 0)
    assert sorted(Path(e.source).suffix for e in entries) == [".flac", ".ogg", ".wav"]
    assert all(e.text is None and e.speaker_id == 0 for e in entries)


def test_broken_files_are_reported_and_the_rest_kept(tmp_path, capsys):
    data = tmp_path / "bob"
    data.mkdir()
    for wav in FIXTURE_WAVS[:3]:
        shutil.copy(wav, data / wav.name)
    (data / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (data / "empty.wav").write_bytes(b"")
    _tone(data / "short.wav", 0.1, 16000)
    assert main(["prepare", str(data), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "kept 3 utterance(s)" in printed and "dropped 3 file(s)" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {d["source"]: d["reason"] for d in report["dropped_files"]}
    assert set(reasons) == {"corrupt.wav", "empty.wav", "short.wav"}
    assert "not a readable" in reasons["corrupt.wav"]
    assert "empty" in reasons["empty.wav"]
    assert "too short" in reasons["short.wav"]
    for source, reason in reasons.items():
        assert f"dropped {source}: {reason}" in printed
    assert len(read_manifest(tmp_path / "out")[2]) == 3


def test_input_at_22050_hz_is_resampled_to_the_spec_rate(tmp_path):
    _tone(tmp_path / "data" / "tone.wav", 1.0, 22050, frequency=440.0)
    prepare(tmp_path / "data", tmp_path / "out")
    spec, _, (entry,) = read_manifest(tmp_path / "out")
    audio, _ = load_entry(tmp_path / "out", entry, spec)
    assert entry.frames == math.ceil(16000 / spec.hop_length)
    # Unresampled samples read at 16 kHz would put the tone at 440 * 16000 / 22050 = 319 Hz.
    frequencies = np.fft.rfftfreq(16000, d=1 / spec.sample_rate)
    assert frequencies[np.argmax(np.abs(np.fft.rfft(audio[:16000])))] == pytest.approx(440, abs=2)


def test_split_is_by_utterance_seeded_and_deterministic():
    utterances = [(f"s{i % 3}_{i:03d}", f"s{i % 3}") for i in range(40)]
    first = held_out_ids(utterances, 0.1, seed=0)
    assert first == held_out_ids(list(reversed(utterances)), 0.1, seed=0)
    assert first != held_out_ids(utterances, 0.1, seed=1)
    assert len(first) == 4 and {utt_id[:2] for utt_id in first} == {"s0", "s1", "s2"}
    assert len(held_out_ids(utterances[:2], 0.05, seed=0)) == 1
    assert held_out_ids(utterances[:1], 0.5, seed=0) == set()
    assert held_out_ids(utterances, 0.0, seed=0) == set()
    assert len(held_out_ids(utterances[:3], 0.99, seed=0)) == 2  # one is always left to train


def test_prepared_split_follows_the_seed(prepared, tmp_path):
    def val_ids(folder: Path) -> set[str]:
        return {e.id for e in read_manifest(folder)[2] if e.split == "val"}

    out, _ = prepared
    prepare(FIXTURE, tmp_path / "same", val_fraction=0.25, seed=0)
    prepare(FIXTURE, tmp_path / "again", val_fraction=0.25, seed=0)
    prepare(FIXTURE, tmp_path / "other", val_fraction=0.25, seed=1)
    assert val_ids(tmp_path / "same") == val_ids(tmp_path / "again")
    assert val_ids(tmp_path / "same") != val_ids(tmp_path / "other")
    assert len(val_ids(tmp_path / "same")) == 3 and len(val_ids(out)) == 1


def test_named_val_ids_replace_the_seeded_split(tmp_path):
    config = _config(tmp_path, "val_ids: [awb_0002, slt_0001, not_in_the_corpus]\n")
    report = prepare(FIXTURE, tmp_path / "out", config)
    entries = read_manifest(tmp_path / "out")[2]
    assert {e.id for e in entries if e.split == "val"} == {"awb_0002", "slt_0001"}
    assert (report.train, report.val) == (len(entries) - 2, 2)


def test_a_named_unseen_speaker_is_kept_out_of_training_whole(tmp_path, capsys):
    yaml = "unseen_speakers: [slt, nobody]\nval_fraction: 0.25\nval_ids: null\n"
    report = prepare(FIXTURE, tmp_path / "out", _config(tmp_path, yaml))
    _, speakers, entries = read_manifest(tmp_path / "out")
    assert speakers == ["awb", "kal16", "kal_diphone"]  # speakers.json: the trained ones
    unseen = [e for e in entries if e.split == "unseen"]
    assert sorted(e.id for e in unseen) == ["slt_0001", "slt_0002", "slt_0003"]
    assert all(e.speaker == "slt" and e.speaker_id is None for e in unseen)
    assert all(e.speaker != "slt" for e in entries if e.split != "unseen")
    assert (report.unseen, report.unseen_speakers, report.unseen_not_found) == (
        3,
        ["slt"],
        ["nobody"],
    )
    assert report.train + report.val + report.unseen == report.kept == len(FIXTURE_WAVS)
    assert report.val == 2 and report.speaker_stats["slt"].split == "unseen"
    saved = PrepareConfig.model_validate_json(
        (tmp_path / "out" / "prepare_config.json").read_text()
    )
    assert saved.unseen_speakers == ["slt"]
    # An unseen speaker's utterance named as held out stays unseen.
    yaml = "unseen_speakers: [slt]\nval_ids: [slt_0001, awb_0001]\n"
    prepare(FIXTURE, tmp_path / "again", _config(tmp_path, yaml))
    splits = {e.id: e.split for e in read_manifest(tmp_path / "again")[2]}
    assert (splits["slt_0001"], splits["awb_0001"], splits["awb_0002"]) == (
        "unseen",
        "val",
        "train",
    )
    main(
        ["prepare", str(FIXTURE), str(tmp_path / "cli"), "--config", str(tmp_path / "prepare.yaml")]
    )
    printed = capsys.readouterr().out
    assert "unseen 3" in printed and "unseen speaker(s): slt" in printed


def test_keeping_every_speaker_out_is_an_error(tmp_path):
    yaml = "unseen_speakers: [awb, kal16, kal_diphone, slt]\n"
    with pytest.raises(DatasetError, match="leave no speaker to train on"):
        prepare(FIXTURE, tmp_path / "out", _config(tmp_path, yaml))


def test_the_unseen_speaker_picked_is_the_smallest_with_enough_utterances():
    enough = MIN_UNSEEN_UTTERANCES
    seconds = {"big": 600.0, "small": 90.0, "tiny": 5.0, "mid": 300.0}
    counts = {"big": 200, "small": enough, "tiny": enough - 1, "mid": 100}
    assert unseen_speakers(seconds, counts, None) == ["small"]
    assert unseen_speakers(seconds, {**counts, "small": 1}, None) == ["mid"]
    assert unseen_speakers({"a": 9.0, "b": 9.0, "c": 9.0}, dict.fromkeys("abc", 50), None) == ["a"]
    two = {"big": 600.0, "mid": 300.0}
    assert unseen_speakers(two, counts, None) == []  # fewer than three speakers
    assert unseen_speakers(seconds, dict.fromkeys(seconds, 3), None) == []
    assert unseen_speakers(seconds, counts, []) == []
    assert unseen_speakers(seconds, counts, ["tiny", "big", "gone"]) == ["big", "tiny"]


def test_read_manifest_checks_the_f0_files(prepared, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(prepared[0], out)
    first = read_manifest(out)[2][0]
    np.save(out / first.f0, np.zeros(first.frames + 1, np.float32))
    with pytest.raises(
        DatasetError, match=rf"{first.id}\.npy: expected float32 \({first.frames},\)"
    ):
        load_f0(out, first)
    (out / first.f0).unlink()
    with pytest.raises(DatasetError, match=rf"line 1: .*f0/{first.id}\.npy: missing"):
        read_manifest(out)
    (out / "pitch_spec.json").unlink()
    with pytest.raises(DatasetError, match="line 1: an f0 file, but the folder has no pitch_spec"):
        read_manifest(out)
    (out / "pitch_spec.json").write_text('{"f0_min": 900}')
    with pytest.raises(DatasetError, match=r"pitch_spec\.json: not a PitchSpec"):
        read_manifest(out)


def test_a_pitch_range_above_nyquist_is_a_config_error(tmp_path):
    yaml = "spec: {sample_rate: 8000, n_fft: 256, win_length: 256, hop_length: 64, f_max: 4000}\n"
    with pytest.raises(ConfigError, match=r"pitch\.f0_max \(4000\.0\) must be below Nyquist"):
        prepare(FIXTURE, tmp_path / "out", _config(tmp_path, yaml + "pitch: {f0_max: 4000}\n"))


def test_config_with_an_unknown_key_fails_naming_it(tmp_path, capsys):
    config = _config(tmp_path, "min_seconds: 0.2\nspec:\n  hop_lenght: 128\n")
    with pytest.raises(ConfigError, match=r"spec\.hop_lenght"):
        prepare(FIXTURE, tmp_path / "out", config)
    assert main(["prepare", str(FIXTURE), str(tmp_path / "out"), "--config", str(config)]) == 2
    assert "hop_lenght" in capsys.readouterr().err


def test_config_spec_and_thresholds_are_used_and_saved(tmp_path):
    yaml = "spec: {sample_rate: 8000, n_fft: 256, win_length: 256, hop_length: 64, n_mels: 20,"
    yaml += " f_max: 4000}\nlevel: rms\nmin_seconds: 1.5\n"
    report = prepare(FIXTURE, tmp_path / "out", _config(tmp_path, yaml))
    spec, _, entries = read_manifest(tmp_path / "out")
    assert (spec.sample_rate, spec.hop_length, spec.n_mels) == (8000, 64, 20)
    saved = json.loads((tmp_path / "out" / "prepare_config.json").read_text())
    assert (saved["level"], saved["min_seconds"], saved["spec"]["n_mels"]) == ("rms", 1.5, 20)
    assert report.dropped > 0 and all("too short" in d["reason"] for d in report.dropped_files)
    assert all(e.samples / 8000 >= 1.5 for e in entries)


def test_trim_silence_cuts_edges_and_caps_pauses():
    rate = 16000
    tone = 0.5 * np.sin(2 * math.pi * 300 * np.arange(rate // 2) / rate).astype(np.float32)
    silence = np.zeros(rate * 2, dtype=np.float32)
    audio = np.concatenate([silence[: rate // 1], tone, silence, tone, silence[: rate // 4]])
    trimmed = trim_silence(audio, rate, -40.0, edge_seconds=0.1, pause_seconds=0.4)
    assert trimmed.size == pytest.approx(rate * (0.1 + 0.5 + 0.4 + 0.5 + 0.1), abs=rate * 0.02)
    assert trim_silence(np.zeros(rate, dtype=np.float32), rate, -40.0, 0.1, 0.4).size == 0


def test_level_normalisation_peak_and_rms():
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    peak = normalise_level(audio, "peak", -1.0, -20.0)
    assert np.abs(peak).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    rms = normalise_level(audio, "rms", -1.0, -30.0)
    assert np.sqrt(np.mean(rms.astype(np.float64) ** 2)) == pytest.approx(
        10 ** (-30 / 20), rel=1e-4
    )
    loud = normalise_level(audio, "rms", -1.0, -3.0)  # would clip: the peak ceiling wins
    assert np.abs(loud).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert normalise_level(audio, "none", -1.0, -20.0) is audio


def test_read_manifest_names_what_is_wrong(prepared, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(prepared[0], out)
    first = read_manifest(out)[2][0]
    (out / first.mel).unlink()
    with pytest.raises(DatasetError, match=rf"line 1: .*{first.id}\.npy: missing"):
        read_manifest(out)
    assert len(read_manifest(out, check_files=False)[2]) == len(FIXTURE_WAVS)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"speaker_id":0', '"speaker_id":3')
    (out / "manifest.jsonl").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetError, match=r"line 1: speaker .* does not match speaker id 3"):
        read_manifest(out)
    (out / "speakers.json").unlink()
    with pytest.raises(DatasetError, match=r"speakers\.json: missing"):
        read_manifest(out)
    with pytest.raises(DatasetError, match="no such prepared-data folder"):
        read_manifest(tmp_path / "nowhere")


def test_output_folder_rules(prepared, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a prepared folder"):
        prepare(FIXTURE, foreign)
    # Re-preparing into a prepared folder replaces it; arrays of dropped utterances go.
    out = tmp_path / "again"
    shutil.copytree(prepared[0], out)
    (out / "mel" / "stale.npy").write_bytes(b"")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="none of 1 audio file"):
        prepare(broken, out)
    assert not (out / "manifest.jsonl").exists()  # no manifest that could point at old files
    prepare(FIXTURE, out, val_fraction=0.5)
    assert not (out / "mel" / "stale.npy").exists()
    assert sum(e.split == "val" for e in read_manifest(out)[2]) == len(FIXTURE_WAVS) // 2


def test_missing_or_empty_corpus_folder_is_a_user_error(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "no such corpus folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        prepare(tmp_path / "empty", tmp_path / "out")
