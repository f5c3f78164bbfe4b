"""Helpers shared by the distillation and classifier tests: frozen checkpoints, configs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from conftest import tiny_teacher_config
from run_checks import ROOT

from training.dataset import PreparedCorpus
from wavenet import Classifier, ClassifierConfig, FeatureSpec, Teacher, save_model

CONFIGS = ROOT / "training" / "configs"


def tiny_classifier(corpus: PreparedCorpus) -> Classifier:
    """A randomly initialised four-layer classifier for the corpus's features and speakers."""
    torch.manual_seed(1)
    config = ClassifierConfig(
        layers=4,
        dilation_cycle=4,
        channels=8,
        units=[f"unit{i}" for i in range(8)],
        speakers=corpus.speakers,
        feature_layers=[1, 3],
    )
    return Classifier(config, corpus.spec).eval()


def save_frozen_models(
    corpus: PreparedCorpus,
    directory: Path,
    speakers: list[str] | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[Path, Path]:
    """A tiny teacher (at directory/teacher-run/model, like a train-teacher run) and a tiny
    classifier, saved; `speakers` and `spec` override the teacher's, to make mismatches."""
    torch.manual_seed(0)
    config = tiny_teacher_config(speakers=corpus.speakers if speakers is None else speakers)
    teacher = save_model(Teacher(config, spec or corpus.spec), directory / "teacher-run" / "model")
    classifier = save_model(tiny_classifier(corpus), directory / "classifier")
    return teacher, classifier


def config_file(directory: Path, name: str = "student_tiny.yaml", **overrides) -> Path:
    """A shipped config with some top-level keys replaced, written to `directory`."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config.update(overrides)
    path = directory / f"custom-{name}"
    path.write_text(yaml.safe_dump(config))
    return path


def distill_command(teacher: Path, classifier: Path, data: Path, run: Path, config: Path):
    """`python -m wavenet.cli distill ...` on the CPU, as a subprocess argument list."""
    return [
        sys.executable,
        "-m",
        "wavenet.cli",
        "distill",
        *("--teacher", str(teacher), "--classifier", str(classifier)),
        *("--data", str(data), "--out", str(run), "--config", str(config)),
        *("--device", "cpu"),
    ]
