"""`wavenet spectrogram` and the periodicity score that tells harmonics from a whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_student_config, tiny_teacher_config

from training.dataset import load_prepared
from training.metrics import periodicity
from wavenet import Student, Teacher, save_model
from wavenet.cli import main

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
