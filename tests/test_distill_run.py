"""`wavenet distill` runs: outputs, exact resume, SIGKILL, DDP, one-line errors; a
spectral-only student without a teacher; the student in `wavenet synthesize` and
`wavenet evaluate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import soundfile
import torch
from distill_fixtures import config_file, distill_command, save_frozen_models
from run_checks import (
    kill_after_a_checkpoint,
    resume_two_more_steps,
    run_ddp_three_steps,
    tensorboard_tags,
)

from training.config import ConfigError
from training.dataset import load_prepared
from training.distill import TeacherWarning, distill
from training.distill_terms import LOGGED_TERMS, TERMS
from training.evaluate import markdown_table
from training.monitor import read_metrics
from training.state import load_state
from wavenet import Student, load_model
from wavenet.cli import main

ROW_KEYS = {*LOGGED_TERMS, "step", "total", "grad_norm", "lr", "samples_per_s"}


@pytest.fixture(scope="module")
def models(prepared_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """A saved tiny teacher (in a run folder whose held-out NLL fails the gate) and classifier."""
    teacher, classifier = save_frozen_models(
        load_prepared(prepared_corpus), tmp_path_factory.mktemp("models")
    )
    (teacher.parent / "metrics.jsonl").write_text(json.dumps({"step": 10, "val_nll": 8.0}) + "\n")
    return teacher, classifier


def cli(models, data: Path, run: Path, config: Path, *extra: str) -> int:
    teacher, classifier = models
    arguments = distill_command(teacher, classifier, data, run, config)[3:]
    return main([*arguments, *extra])


def test_cli_run_writes_metrics_logs_checkpoint_and_a_loadable_ema_student(
    models, prepared_corpus, tmp_path
):
    run = tmp_path / "run"
    config = config_file(tmp_path, log_every=2, eval_every=4, sample_every=4, teacher_nll_gate=6.0)
    with pytest.warns(TeacherWarning, match="8.000 bits/sample"):
        assert cli(models, prepared_corpus, run, config, "--steps", "4") == 0
    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4]
    assert all(r.keys() >= ROW_KEYS and math.isfinite(r["total"]) for r in records)
    assert "val_kl" not in records[0] and math.isfinite(records[1]["val_kl"])
    assert records[1]["val_log_mel_l1"] > 0
    student = load_model(run / "model")
    assert isinstance(student, Student)
    assert student.config.speakers == load_model(models[0]).config.speakers
    assert load_state(run / "checkpoint")["step"] == 4
    extra = json.loads((run / "model" / "config.json").read_text())["extra"]
    assert extra["step"] == 4 and extra["teacher"] == str(models[0])
    tags = tensorboard_tags(run / "tensorboard")
    assert {"train/kl", "train/stft", "train/total", "val/kl"} <= set(tags["scalars"])
    assert {"sample/generated", "sample/real"} <= set(tags["audio"])
    assert "sample/mel_real_vs_generated" in tags["images"]


def test_switched_off_terms_are_null_in_every_metrics_row(models, prepared_corpus, tmp_path):
    weights = {term.name: float(term.name in ("kl", "stft")) for term in TERMS}
    config = config_file(tmp_path, loss_weights=weights, log_every=1, sample_every=0)
    distill(*models, prepared_corpus, tmp_path / "run", config, steps=2)
    for record in read_metrics(tmp_path / "run"):
        assert record.keys() >= ROW_KEYS
        for name, weight in weights.items():
            assert (record[name] is None) == (weight == 0), name


def test_resumed_distillation_equals_uninterrupted_distillation(models, prepared_corpus, tmp_path):
    config = config_file(tmp_path, log_every=1, eval_every=4, sample_every=0)
    distill(*models, prepared_corpus, tmp_path / "whole", config, steps=4)
    distill(*models, prepared_corpus, tmp_path / "split", config, steps=2)
    distill(*models, prepared_corpus, tmp_path / "split", steps=4, resume=True)
    whole, split = (load_state(tmp_path / name / "checkpoint") for name in ("whole", "split"))
    for part in ("model", "ema"):
        for name, tensor in whole[part].items():
            torch.testing.assert_close(split[part][name], tensor, rtol=1e-5, atol=1e-6)
    totals = [[r["total"] for r in read_metrics(tmp_path / n)] for n in ("whole", "split")]
    assert totals[1] == pytest.approx(totals[0], rel=1e-5) and len(totals[0]) == 4


def test_a_distillation_killed_with_sigkill_resumes_from_its_last_checkpoint(
    models, prepared_corpus, tmp_path
):
    run = tmp_path / "run"
    config = config_file(tmp_path, log_every=1, eval_every=1000, sample_every=0, checkpoint_every=3)
    command = distill_command(*models, prepared_corpus, run, config)
    resume_two_more_steps(command, run, kill_after_a_checkpoint(command, run))


def test_ddp_with_two_cpu_processes_distils_and_writes_one_checkpoint(
    models, prepared_corpus, tmp_path
):
    run = tmp_path / "run"
    config = config_file(tmp_path, log_every=1, eval_every=3, sample_every=0)
    run_ddp_three_steps(distill_command(*models, prepared_corpus, run, config), run, "val_kl")


@pytest.mark.parametrize(
    ("speakers", "spec_change", "message"),
    [
        (["alice", "bob"], {}, "the teacher's speakers ['alice', 'bob'] differ"),
        (None, {"hop_length": 128}, "the teacher's FeatureSpec differs from the student's (hop"),
    ],
)
def test_a_teacher_that_does_not_fit_the_student_is_a_one_line_error(
    prepared_corpus, tmp_path, capsys, speakers, spec_change, message
):
    corpus = load_prepared(prepared_corpus)
    spec = corpus.spec.model_copy(update=spec_change)
    models = save_frozen_models(corpus, tmp_path, speakers, spec)
    code = cli(models, prepared_corpus, tmp_path / "run", config_file(tmp_path))
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and message in error, error
    assert not (tmp_path / "run").exists()


def test_an_unknown_config_key_fails_naming_it(models, prepared_corpus, tmp_path, capsys):
    config = config_file(tmp_path, kl_warmpu={"spectral_steps": 1})
    assert cli(models, prepared_corpus, tmp_path / "run", config) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "kl_warmpu" in error, error


# The spectral terms alone: the pitch-aware student starts at its harmonic-plus-noise source.
SPECTRAL_ONLY = {"kl": 0.0, "power": 1.0, "stft": 1.0, "perceptual": 0.0, "contrastive": 0.0}
TEACHER_SCORES = ("val_kl", "val_cross_entropy", "val_entropy")


def spectral_only_config(directory: Path) -> Path:
    return config_file(
        directory,
        "student_tiny_pitch.yaml",
        loss_weights=SPECTRAL_ONLY,
        log_every=1,
        eval_every=2,
        sample_every=2,
        checkpoint_every=2,
    )


def test_a_spectral_only_student_trains_and_resumes_without_a_teacher(prepared_corpus, tmp_path):
    run, config = tmp_path / "run", spectral_only_config(tmp_path)
    model = distill(None, None, prepared_corpus, run, config, steps=2)
    student = load_model(model)
    assert isinstance(student, Student) and student.config.source == "harmonic"
    assert student.config.speakers == load_prepared(prepared_corpus).speakers
    assert json.loads((model / "config.json").read_text())["extra"]["teacher"] is None
    (evaluated,) = [r for r in read_metrics(run) if "val_log_mel_l1" in r]
    assert evaluated["step"] == 2 and evaluated["val_log_mel_l1"] > 0
    assert 0 <= evaluated["val_periodicity"] <= 1
    assert all(evaluated.get(name) is None for name in TEACHER_SCORES), evaluated
    assert all(r["kl"] is None and r["contrastive"] is None for r in read_metrics(run))
    # The run's saved config decides on resume: it needs no teacher either.
    distill(None, None, prepared_corpus, run, steps=4, resume=True)
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert math.isfinite(records[-1]["val_log_mel_l1"]) and "val_kl" not in records[-1]
    assert load_state(run / "checkpoint")["step"] == 4


def test_a_teacher_term_without_a_teacher_is_a_one_line_error_naming_it(
    prepared_corpus, tmp_path, capsys
):
    weights = {**SPECTRAL_ONLY, "kl": 1.0}
    config = config_file(tmp_path, "student_tiny_pitch.yaml", loss_weights=weights)
    with pytest.raises(ConfigError, match=r"loss_weights kl=1.0 needs a teacher: pass --teacher"):
        distill(None, None, prepared_corpus, tmp_path / "run", config, steps=1)
    full = config_file(tmp_path)  # every term on, contrastive too
    arguments = ["distill", "--data", str(prepared_corpus), "--out", str(tmp_path / "run")]
    assert main([*arguments, "--config", str(full), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "loss_weights kl=1.0, contrastive=1.0 need a teacher" in error, error
    assert not (tmp_path / "run").exists()


def test_a_teacher_given_to_a_spectral_only_student_is_checked_and_scored(
    models, prepared_corpus, tmp_path
):
    run = tmp_path / "run"
    config = config_file(
        tmp_path, loss_weights=SPECTRAL_ONLY, log_every=1, eval_every=2, sample_every=0
    )
    distill(models[0], None, prepared_corpus, run, config, steps=2)
    assert math.isfinite(read_metrics(run)[-1]["val_kl"])
    extra = json.loads((run / "model" / "config.json").read_text())["extra"]
    assert extra["teacher"] == str(models[0])
    corpus = load_prepared(prepared_corpus)
    misfit, _ = save_frozen_models(corpus, tmp_path / "misfit", ["alice", "bob"])
    with pytest.raises(ConfigError, match="the teacher's speakers"):
        distill(misfit, None, prepared_corpus, tmp_path / "other", config, steps=2)


def test_synthesize_and_evaluate_accept_a_student(models, prepared_corpus, tmp_path):
    corpus = load_prepared(prepared_corpus)
    config = config_file(tmp_path, sample_every=0)
    student = distill(*models, prepared_corpus, tmp_path / "run", config, steps=2)
    wav = tmp_path / "copy.wav"
    source = corpus.root / corpus.val[0].entry.mel
    synthesize = ["synthesize", "--model", str(student), "--input", str(source), "--out", str(wav)]
    assert main([*synthesize, "--speaker", corpus.speakers[0], "--device", "cpu"]) == 0
    audio, rate = soundfile.read(wav)
    assert rate == corpus.spec.sample_rate and len(audio) == corpus.val[0].entry.samples
    report_path = tmp_path / "report.json"
    evaluate = ["evaluate", "--model", str(student), "--data", str(prepared_corpus)]
    options = ["--clips", "1", "--teacher", str(models[0]), "--device", "cpu"]
    assert main([*evaluate, *options, "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["kind"] == "student" and report["nll_bits_per_sample"] is None
    kl = report["kl_to_teacher"]
    assert kl["kl"] == pytest.approx(kl["cross_entropy"] - kl["entropy"], abs=1e-4)
    assert report["rows"][0]["kl_nats_per_sample"] == kl["kl"]
    assert report["clips"][0]["complete"], "one parallel pass makes the whole clip"
    assert "| KL to teacher (nats/sample) |" in markdown_table(report)
