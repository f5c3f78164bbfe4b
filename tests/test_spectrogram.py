"""`wavenet spectrogram` and the periodicity score that tells harmonics from a whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_student_config, tiny_teacher_config

from training.dataset import load_prepared
from training.eval_clips import clip_phase
from training.metrics import periodicity
from training.spectrogram import spectrogram_rows
from wavenet import Student, Teacher, load_model, save_model
from wavenet.cli import main
from wavenet.excitation import ExcitationSpec

RATE = 16000


def _harmonic(f0: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20)) / 3


def test_periodicity_is_high_for_harmonics_and_low_for_noise():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(RATE)
    # Noise through a resonance at 500 Hz: the spectral envelope of a whispered vowel.
    whisper = np.convolve(noise, np.exp(-np.arange(64) / 16) * np.cos(np.pi * np.arange(64) / 16))
    for f0 in (80.0, 150.0, 300.0):
        assert periodicity(_harmonic(f0), RATE) > 0.95
    assert periodicity(noise, RATE) < 0.3
    assert periodicity(whisper, RATE) < 0.6


def test_periodicity_ignores_quiet_frames_and_needs_one_frame():
    voiced = np.concatenate([np.zeros(RATE), _harmonic(120.0, 0.5), 1e-4 * np.ones(RATE)])
    assert periodicity(voiced, RATE) > 0.95
    assert periodicity(np.zeros(RATE), RATE) is None
    assert periodicity(np.ones(100), RATE) is None


@pytest.fixture(scope="module")
def models(prepared_corpus, tmp_path_factory):
    corpus = load_prepared(prepared_corpus)
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    teacher = Teacher(tiny_teacher_config(speakers=corpus.speakers), corpus.spec)
    student = Student(tiny_student_config(speakers=corpus.speakers), corpus.spec)
    return save_model(teacher, root / "teacher"), save_model(student, root / "student")


def test_spectrogram_draws_one_row_per_system(models, prepared_corpus, tmp_path, capsys):
    out = tmp_path / "figure.png"
    args = ["spectrogram", "--model", *map(str, models), "--data", str(prepared_corpus)]
    assert main([*args, "--out", str(out), "--max-seconds", "0.5", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(report["periodicity"]) == [
        "real",
        "Griffin-Lim",
        "teacher (teacher)",
        "student (student)",
    ]
    corpus = load_prepared(prepared_corpus)
    assert report["clip"] == corpus.val[0].entry.id
    assert 0 < report["seconds"] <= corpus.val[0].frames * corpus.spec.hop_length / RATE
    assert not list(tmp_path.glob("*.partial"))


def test_spectrogram_names_a_missing_clip(models, prepared_corpus, tmp_path, capsys):
    args = ["spectrogram", "--model", str(models[1]), "--data", str(prepared_corpus)]
    code = main([*args, "--out", str(tmp_path / "f.png"), "--clip", "nope", "--device", "cpu"])
    assert code == 2
    assert "no held-out clip has the id 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


@pytest.fixture(scope="module")
def pitch_student(prepared_corpus, tmp_path_factory):
    """An untrained tiny student with the harmonic excitation and source."""
    corpus = load_prepared(prepared_corpus)
    torch.manual_seed(0)
    config = tiny_student_config(
        speakers=corpus.speakers,
        excitation=ExcitationSpec(harmonics=3),
        source="harmonic",
        pitch=corpus.pitch,
    )
    return save_model(Student(config, corpus.spec), tmp_path_factory.mktemp("pitch") / "pitch")


def test_a_pitch_aware_model_is_drawn_with_the_tracker_f0(
    pitch_student, models, prepared_corpus, tmp_path, capsys
):
    out = tmp_path / "figure.png"
    args = ["spectrogram", "--model", str(pitch_student), str(models[1])]
    assert main([*args, "--data", str(prepared_corpus), "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["f0_contour"] == ["real", "student (pitch)"], "not over a mel-only model"
    assert all(score is not None for score in report["periodicity"].values())


def test_the_f0_and_phase_given_are_the_clips_and_drawn_at_frame_centres(
    pitch_student, prepared_corpus
):
    made = spectrogram_rows([pitch_student], prepared_corpus)
    corpus = load_prepared(prepared_corpus)
    utterance = corpus.val[0]
    f0 = np.array(utterance.load_f0())
    times, contour = made.contours["student (pitch)"]
    np.testing.assert_array_equal(contour, f0)
    hop = corpus.spec.hop_length
    np.testing.assert_allclose(times, (np.arange(len(f0)) * hop + hop / 2) / RATE)
    assert (f0 > 0).any(), "the clip has no voiced frame: the test would be vacuous"
    student = load_model(pitch_student)
    mel = torch.from_numpy(np.array(utterance.load(corpus.spec)[1]))[None]
    speaker = torch.tensor([corpus.speakers.index(utterance.speaker)])
    phase = torch.tensor([clip_phase(utterance.entry.id)], dtype=torch.float64)
    expected = student.generate(
        mel,
        speaker,
        f0=torch.from_numpy(f0)[None],
        phase=phase,
        generator=torch.Generator().manual_seed(0),
    )[0].numpy()
    made_audio = made.rows["student (pitch)"]
    np.testing.assert_allclose(made_audio, expected[: len(made_audio)], atol=1e-6)


def test_spectrogram_draws_a_clip_of_the_unseen_speaker(prepared_with_unseen, tmp_path, capsys):
    """--clip finds a held-out clip of either split: here one of a speaker kept out."""
    data = prepared_with_unseen
    corpus = load_prepared(data)
    torch.manual_seed(0)
    student = Student(tiny_student_config(speakers=corpus.speakers), corpus.spec)
    model = save_model(student, tmp_path / "student")
    wanted = corpus.unseen[-1].entry.id
    args = ["spectrogram", "--model", str(model), "--data", str(data), "--clip", wanted]
    assert main([*args, "--out", str(tmp_path / "f.png"), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["clip"] == wanted
    assert wanted.startswith("slt") and (tmp_path / "f.png").is_file()
