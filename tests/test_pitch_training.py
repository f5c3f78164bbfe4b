"""Training pitch-aware models: F0 and per-crop phases in, corpus and PitchSpec checks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_teacher_config
from distill_fixtures import config_file as distill_config_file
from distill_fixtures import tiny_classifier
from run_checks import ROOT

from training import distributed
from training.dataset import SegmentCrops, load_prepared, make_loader
from training.distill import DistillCrops, DistillJob, distill, load_frozen
from training.distill import train_step as distill_step
from training.distill_config import active_weights, resolve_distill_config
from training.distill_losses import distill_losses, noise_for
from training.launch import new_run
from training.monitor import read_metrics
from training.pitch_inputs import crop_phases, with_corpus_pitch, with_phases
from training.teacher_config import resolve_config
from training.train_teacher import build_run, teacher_losses, to_device, train_step, train_teacher
from wavenet import Student, Teacher, save_model
from wavenet.checkpoint import load_model
from wavenet.excitation import ExcitationSpec
from wavenet.pitch import PitchSpecError

CPU = torch.device("cpu")

CONFIGS = ROOT / "training" / "configs"
TINY_PITCH = CONFIGS / "tiny_pitch.yaml"


def without_f0(prepared: Path, out: Path) -> Path:
    """A copy of a prepared corpus as one made without F0."""
    shutil.copytree(prepared, out)
    shutil.rmtree(out / "f0")
    (out / "pitch_spec.json").unlink()
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    lines = [json.dumps({k: v for k, v in entry.items() if k != "f0"}) for entry in entries]
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out


def config_file(directory: Path, source: Path, **model) -> Path:
    config = yaml.safe_load(source.read_text())
    config["model"].update(model)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pitch_configs_differ_from_their_mel_only_ones_in_pitch_alone():
    pairs = [
        ("teacher.yaml", "teacher_pitch.yaml"),
        ("teacher_gpu.yaml", "teacher_pitch_gpu.yaml"),
        ("teacher_lean.yaml", "teacher_pitch_lean.yaml"),
        ("tiny.yaml", "tiny_pitch.yaml"),
        ("student_cpu.yaml", "student_cpu_pitch.yaml"),
        ("student_tiny.yaml", "student_tiny_pitch.yaml"),
    ]
    for plain, pitched in pairs:
        mel_only = yaml.safe_load((CONFIGS / plain).read_text())
        pitch = yaml.safe_load((CONFIGS / pitched).read_text())
        assert pitch["model"].pop("excitation")
        assert pitch["model"].pop("source", "harmonic") == "harmonic"
        pitch["model"].pop("source_settings", None)
        assert pitch == mel_only, pitched


def test_crop_phases_are_a_pure_function_of_the_step():
    first = crop_phases(4, seed=0, rank=0, step=7)
    assert torch.equal(first, crop_phases(4, seed=0, rank=0, step=7))
    assert not torch.equal(first, crop_phases(4, seed=0, rank=0, step=8))
    assert not torch.equal(first, crop_phases(4, seed=0, rank=1, step=7))
    assert first.dtype == torch.float64 and len(set(first.tolist())) == 4
    assert ((first >= 0) & (first < 2 * torch.pi)).all()


def test_a_pitch_model_takes_the_corpus_pitch_spec_and_refuses_a_corpus_without_f0(
    prepared_corpus, tmp_path
):
    corpus = load_prepared(prepared_corpus)
    config = with_corpus_pitch(resolve_config(TINY_PITCH, corpus.speakers), corpus, TINY_PITCH)
    assert config.model.pitch == corpus.pitch is not None
    mel_only = resolve_config(CONFIGS / "tiny.yaml", corpus.speakers)
    assert with_corpus_pitch(mel_only, corpus, None) is mel_only
    bare = without_f0(prepared_corpus, tmp_path / "bare")
    with pytest.raises(PitchSpecError, match=r"has no F0.*tiny_pitch\.yaml"):
        train_teacher(bare, tmp_path / "run", TINY_PITCH, steps=1)
    ceiling = corpus.pitch.f0_max
    other = config_file(tmp_path, TINY_PITCH, pitch={"f0_max": ceiling - 100})
    with pytest.raises(PitchSpecError, match=f"f0_max {ceiling - 100} != {ceiling}"):
        train_teacher(prepared_corpus, tmp_path / "run", other, steps=1)
    narrow = config_file(tmp_path, TINY_PITCH, excitation={"harmonics": 3, "f0_max": ceiling / 2})
    with pytest.raises(ValueError, match=r"above excitation\.f0_max"):
        train_teacher(prepared_corpus, tmp_path / "run", narrow, steps=1)
    assert not (tmp_path / "run").exists(), "a refused run writes nothing"


def test_a_few_pitch_teacher_steps_lower_the_held_out_loss(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    config = with_corpus_pitch(resolve_config(TINY_PITCH, corpus.speakers), corpus, TINY_PITCH)
    config = config.model_copy(update={"segment_frames": 2})
    run = build_run(config, corpus, distributed.Processes(0, 1, torch.device("cpu")), Path())
    held_out = SegmentCrops(corpus.val, corpus.spec, 8, seed=123)
    fixed = to_device(next(iter(make_loader(held_out, 0, 1, 4, 0))), torch.device("cpu"), True)
    pitch = {"f0": fixed["f0"], "phase": crop_phases(4, 0, 0, 0)}

    def nll() -> float:
        with torch.no_grad():
            return float(teacher_losses(run.model, fixed, True, pitch)["nll"])

    with pytest.raises(ValueError, match="pitch-aware: it needs f0"):
        teacher_losses(run.model, fixed, True)
    before = nll()
    crops = SegmentCrops(corpus.train, corpus.spec, config.segment_frames, seed=0)
    for step, batch in enumerate(make_loader(crops, 0, 60, config.batch_size, 0)):
        train_step(run, to_device(batch, torch.device("cpu"), True), step)
    after = nll()
    assert after < before - 0.5, (before, after)
    assert run.model.excitation.weight.abs().sum() > 0, "the excitation was not trained"


def test_a_pitch_teacher_run_saves_its_pitch_spec_and_samples(prepared_corpus, tmp_path):
    config = config_file(tmp_path, TINY_PITCH)
    data = yaml.safe_load(config.read_text())
    data.update(log_every=2, eval_every=2, sample_every=2, sample_frames=1)
    config.write_text(yaml.safe_dump(data))
    model_dir = train_teacher(prepared_corpus, tmp_path / "run", config, steps=2)
    model = load_model(model_dir)
    assert model.config.excitation.harmonics == 3
    assert model.config.pitch == load_prepared(prepared_corpus).pitch
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["pitch"] == model.config.pitch.model_dump(mode="json")
    train_teacher(prepared_corpus, tmp_path / "run", steps=3, resume=True)  # pitch rechecked


# Distillation


@pytest.fixture(scope="module")
def pitch_models(prepared_corpus, tmp_path_factory):
    """A saved tiny pitch-aware teacher (trained on the corpus's PitchSpec) and classifier."""
    corpus = load_prepared(prepared_corpus)
    directory = tmp_path_factory.mktemp("pitch-models")
    torch.manual_seed(0)
    config = tiny_teacher_config(
        speakers=corpus.speakers, excitation=ExcitationSpec(harmonics=3), pitch=corpus.pitch
    )
    teacher = save_model(Teacher(config, corpus.spec), directory / "teacher-run" / "model")
    classifier = save_model(tiny_classifier(corpus), directory / "classifier")
    return teacher, classifier


def pitch_distill_run(prepared_corpus, pitch_models, tmp_path, **overrides):
    corpus = load_prepared(prepared_corpus)
    path = distill_config_file(tmp_path, "student_tiny_pitch.yaml", **overrides)
    config = with_corpus_pitch(resolve_distill_config(path, corpus.speakers), corpus, path)
    torch.manual_seed(config.seed)
    student = Student(config.model, corpus.spec).train()
    run = new_run(config, corpus, distributed.Processes(0, 1, CPU), tmp_path, student)
    teacher, classifier = (load_frozen(path, CPU) for path in pitch_models)
    return run, DistillJob(teacher, classifier, pitch_models[0])


def distill_batches(run, steps, start=0):
    crops = DistillCrops(run.corpus.train, run.corpus.spec, run.config.segment_frames, seed=0)
    for batch in make_loader(crops, start, start + steps, run.config.batch_size, 0):
        yield to_device(batch, CPU, with_speaker=True)


def test_student_and_teacher_read_one_phase_and_c2_carries_its_own_f0(
    prepared_corpus, pitch_models, tmp_path, monkeypatch
):
    run, job = pitch_distill_run(prepared_corpus, pitch_models, tmp_path)
    seen = {"student": [], "teacher": []}
    student_forward, teacher_forward = Student.forward, job.teacher.forward_companded

    def student_spy(self, z, mel, speaker=None, f0=None, phase=None):
        seen["student"].append((f0, phase))
        return student_forward(self, z, mel, speaker, f0, phase)

    def teacher_spy(x, mel, speaker=None, **pitch):
        seen["teacher"].append((pitch["f0"], pitch["phase"]))
        return teacher_forward(x, mel, speaker, **pitch)

    monkeypatch.setattr(Student, "forward", student_spy)
    monkeypatch.setattr(job.teacher, "forward_companded", teacher_spy)
    step, batch = next(
        (step, batch)
        for step, batch in enumerate(distill_batches(run, 20))
        if batch["utterance"][0] != batch["utterance"][1]
    )
    distill_step(run, job, batch, step)
    phases = crop_phases(2, run.config.seed, 0, step)
    ((student_f0, student_phase),) = seen["student"]
    (matched_f0, matched_phase), (other_f0, other_phase) = seen["teacher"]
    assert torch.equal(student_f0, batch["f0"]) and torch.equal(matched_f0, batch["f0"])
    assert torch.equal(student_phase, phases) and torch.equal(matched_phase, phases)
    assert torch.equal(other_f0, batch["f0"].flip(0)) and torch.equal(other_phase, phases.flip(0))


def test_a_few_pitch_distillation_steps_mend_the_spectrum(prepared_corpus, pitch_models, tmp_path):
    run, job = pitch_distill_run(prepared_corpus, pitch_models, tmp_path, lr=0.005)
    corpus = run.corpus
    held_out = DistillCrops(corpus.val, corpus.spec, 4, seed=1)
    fixed = with_phases(
        to_device(next(iter(make_loader(held_out, 0, 1, 2, 0))), CPU, True), 0, 0, 0
    )
    z = noise_for(tuple(fixed["audio"].shape), seed=99, rank=0, step=0, device=CPU)
    weights = active_weights(run.config, step=10**6)

    def scores() -> dict[str, float]:
        with torch.no_grad():
            losses = distill_losses(
                run.model, job.teacher, job.classifier, fixed, z, weights, run.config
            )
        return {name: float(value) for name, value in losses.items()}

    before = scores()
    for step, batch in enumerate(distill_batches(run, 10)):
        distill_step(run, job, batch, step)
    after = scores()
    # The source student starts at the training-free synthesis: the first steps, every term
    # on, mend its spectrum (the STFT term, ~1% in 10 steps). The KL to this tiny random
    # teacher is no target: the flows' level moves their entropy, and it moves by +-1%.
    assert after["stft"] < 0.99 * before["stft"], (before, after)
    assert after["stft"] + after["power"] < before["stft"] + before["power"], (before, after)
    assert math.isfinite(after["kl"]) and abs(after["kl"] - before["kl"]) < 0.05 * before["kl"]
    gains = dict(run.model.source.named_parameters())
    assert any(gain.grad is not None and gain.grad.abs().sum() > 0 for gain in gains.values())


def test_pitch_distillation_checks_the_corpus_and_the_teacher(
    prepared_corpus, pitch_models, tmp_path
):
    teacher, classifier = pitch_models
    config = distill_config_file(
        tmp_path, "student_tiny_pitch.yaml", log_every=1, eval_every=2, sample_every=2
    )
    bare = without_f0(prepared_corpus, tmp_path / "bare")
    with pytest.raises(PitchSpecError, match="has no F0"):
        distill(teacher, classifier, bare, tmp_path / "run", config, steps=1)
    mel_only_student = distill_config_file(tmp_path, "student_tiny.yaml")
    with pytest.raises(PitchSpecError, match=r"has no F0.*the teacher"):
        distill(teacher, classifier, bare, tmp_path / "run", mel_only_student, steps=1)
    assert not (tmp_path / "run").exists()
    student = load_model(
        distill(teacher, classifier, prepared_corpus, tmp_path / "run", config, steps=2)
    )
    assert student.config.source == "harmonic" and student.config.source_settings is not None
    assert student.config.pitch == load_prepared(prepared_corpus).pitch
    assert read_metrics(tmp_path / "run")[-1]["val_kl"] is not None
