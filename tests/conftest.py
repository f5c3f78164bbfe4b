"""Tiny configs and checkpoints shared by the tests (CPU, milliseconds per forward pass)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile
import torch

from wavenet import FeatureSpec, Student, StudentConfig, Teacher, TeacherConfig, save_model

DATA = Path(__file__).parent / "data"

# The tests run many tiny models: extra threads cost more in synchronisation than they save.
torch.set_num_threads(1)


def tiny_spec(**overrides) -> FeatureSpec:
    """8 kHz audio, 16-sample hop, 8 mel bands: a few frames make a usable test input."""
    fields = dict(sample_rate=8000, n_fft=64, win_length=64, hop_length=16, n_mels=8, f_max=4000.0)
    return FeatureSpec(**{**fields, **overrides})


def tiny_teacher_config(**overrides) -> TeacherConfig:
    """Six layers (dilations 1, 2, 4, 1, 2, 4), 16 channels, two speakers."""
    fields = dict(
        layers=6,
        dilation_cycle=3,
        residual_channels=16,
        gate_channels=16,
        skip_channels=16,
        cond_channels=16,
        speakers=["alice", "bob"],
        speaker_dim=4,
    )
    return TeacherConfig(**{**fields, **overrides})


def tiny_teacher(seed: int = 0, spec: FeatureSpec | None = None, **overrides) -> Teacher:
    """A randomly initialised tiny teacher in eval mode, reproducible from `seed`."""
    torch.manual_seed(seed)
    return Teacher(tiny_teacher_config(**overrides), spec or tiny_spec()).eval()


def tiny_student_config(**overrides) -> StudentConfig:
    """Two flows of three layers (dilations 1, 2, 4), 8 channels, no speakers."""
    fields = dict(
        flow_layers=[3, 3],
        dilation_cycle=3,
        residual_channels=8,
        gate_channels=8,
        skip_channels=8,
        cond_channels=8,
        speaker_dim=4,
    )
    return StudentConfig(**{**fields, **overrides})


def tiny_student(
    seed: int = 0, spec: FeatureSpec | None = None, randomise: bool = False, **overrides
) -> Student:
    """A tiny student in eval mode. Its output layers start at zero (each flow a fixed affine
    map); `randomise` gives them random weights so that every flow depends on its input."""
    torch.manual_seed(seed)
    student = Student(tiny_student_config(**overrides), spec or tiny_spec()).eval()
    if randomise:
        with torch.no_grad():
            for flow in student.flows:
                flow.output.weight.normal_(0, 0.3)
    return student


def write_tone(path: Path, seconds: float = 0.05, sample_rate: int = 8000) -> Path:
    """A short two-tone clip, enough for copy synthesis with the tiny spec."""
    n = int(seconds * sample_rate)
    samples = [
        0.3 * math.sin(2 * math.pi * 220 * t / sample_rate)
        + 0.2 * math.sin(2 * math.pi * 660 * t / sample_rate)
        for t in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "VORBIS" if path.suffix == ".ogg" else "PCM_16"
    soundfile.write(path, samples, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def teacher_checkpoint(tmp_path: Path) -> Path:
    """A saved tiny teacher, as a checkpoint directory."""
    return save_model(tiny_teacher(), tmp_path / "teacher")


@pytest.fixture(scope="session")
def prepared_corpus(tmp_path_factory) -> Path:
    """tests/data/corpus through the real `wavenet prepare`, once per session; a quarter held
    out. Tests read it and must not change it."""
    from training.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "corpus"
    prepare(DATA / "corpus", out, val_fraction=0.25)
    return out


@pytest.fixture(scope="session")
def prepared_with_unseen(tmp_path_factory) -> Path:
    """tests/data/corpus prepared with slt kept out of training (the unseen split), once per
    session; a quarter of the rest held out. Tests read it and must not change it."""
    from training.prepare import prepare

    root = tmp_path_factory.mktemp("unseen")
    config = root / "prepare.yaml"
    config.write_text("unseen_speakers: [slt]\nval_fraction: 0.25\n")
    prepare(DATA / "corpus", root / "prepared", config)
    return root / "prepared"
