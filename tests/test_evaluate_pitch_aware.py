"""`wavenet evaluate` on pitch-aware models: the tracker and predictor routes, the untrained
start of a student with a source, and the teacher's NLL with its excitation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import DATA, tiny_student_config, tiny_teacher_config

from training.dataset import load_prepared
from training.eval_clips import clip_phase
from training.evaluate import evaluate, load_clips, markdown_table, teacher_nll
from training.prepare import prepare
from wavenet import Student, Teacher, save_model
from wavenet.cli import main
from wavenet.excitation import ExcitationSpec
from wavenet.pitch import PitchSpec
from wavenet.pitch_model import PitchPredictor, PitchPredictorConfig

EXCITATION = ExcitationSpec(harmonics=3)
SYSTEMS = [
    ("student copy synthesis, tracker F0", "tracker"),
    ("source (untrained start), tracker F0", "tracker"),
    ("student copy synthesis, predicted F0", "predictor"),
    ("source (untrained start), predicted F0", "predictor"),
    ("Griffin-Lim (32 it.)", None),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The fixture corpus with slt kept out as the unseen speaker (and its F0 tracked)."""
    root = tmp_path_factory.mktemp("pitch-eval")
    (root / "prepare.yaml").write_text("unseen_speakers: [slt]\nval_fraction: 0.25\n")
    prepare(DATA / "corpus", root / "prepared", root / "prepare.yaml")
    return root / "prepared"


@pytest.fixture(scope="module")
def models(corpus, tmp_path_factory):
    """An untrained tiny student with a harmonic source, and an untrained pitch predictor."""
    prepared = load_prepared(corpus)
    root = tmp_path_factory.mktemp("pitch-models")
    torch.manual_seed(0)
    config = tiny_student_config(
        speakers=prepared.speakers, excitation=EXCITATION, source="harmonic", pitch=prepared.pitch
    )
    student = save_model(Student(config, prepared.spec), root / "student")
    predictor_config = PitchPredictorConfig(channels=8, dilations=[1, 2], pitch=prepared.pitch)
    predictor = save_model(PitchPredictor(predictor_config, prepared.spec), root / "pitch")
    return student, predictor


@pytest.fixture(scope="module")
def report(models, corpus, tmp_path_factory):
    student, predictor = models
    out = tmp_path_factory.mktemp("report") / "report.json"
    return evaluate(student, corpus, out, max_seconds=600, clips=1, pitch=predictor)


def test_both_routes_and_the_untrained_start_are_rows_of_each_split(report):
    for split in ("val", "unseen"):
        rows = [row for row in report["rows"] if row["split"] == split]
        assert [(row["system"], row["route"]) for row in rows] == SYSTEMS
        for row in rows:
            for name in ("log_mel_l1", "mrstft", "periodicity_voiced"):
                assert math.isfinite(row[name]), (split, row["system"], name)
            assert row["noise_floor_db"] is None or math.isfinite(row["noise_floor_db"])
        assert 0.5 < report["splits"][split]["real_periodicity_voiced"] <= 1.0
    assert report["clips"][0]["complete"], "one parallel pass makes the whole clip"


def test_an_untrained_student_scores_exactly_its_start_and_the_routes_differ(report):
    metrics = ("log_mel_l1", "mrstft", "pesq_wb", "stoi", "periodicity_voiced", "noise_floor_db")
    rows = {(row["split"], row["system"]): row for row in report["rows"]}
    for split in ("val", "unseen"):
        for route in ("tracker F0", "predicted F0"):
            student = rows[split, f"student copy synthesis, {route}"]
            start = rows[split, f"source (untrained start), {route}"]
            assert all(student[name] == start[name] for name in metrics)
        tracker = rows[split, "student copy synthesis, tracker F0"]
        predicted = rows[split, "student copy synthesis, predicted F0"]
        assert tracker["log_mel_l1"] != predicted["log_mel_l1"], "an untrained predictor's F0"


def test_the_table_names_every_row_and_the_new_columns(report):
    table = markdown_table(report)
    assert "| periodicity (voiced) | noise floor (dB) |" in table
    for split in ("val", "unseen"):
        for system, _ in SYSTEMS:
            assert f"| {split} | {system} |" in table
    assert "the recordings' periodicity (voiced) 0." in table


def test_each_clip_has_its_own_fixed_phase():
    assert clip_phase("awb_0001") == clip_phase("awb_0001")
    phases = {clip_phase(f"clip_{index}") for index in range(20)}
    assert len(phases) == 20 and all(0 <= phase < 2 * math.pi for phase in phases)


def test_pitch_is_refused_for_a_mel_only_model(corpus, models, tmp_path, capsys):
    prepared = load_prepared(corpus)
    teacher = Teacher(tiny_teacher_config(speakers=prepared.speakers), prepared.spec)
    model = save_model(teacher, tmp_path / "teacher")
    args = ["evaluate", "--model", str(model), "--data", str(corpus), "--pitch", str(models[1])]
    assert main([*args, "--out", str(tmp_path / "r.json"), "--device", "cpu"]) == 2
    assert "--pitch feeds a pitch-aware model; this teacher is mel-only" in capsys.readouterr().err


def test_a_corpus_tracked_otherwise_than_the_model_is_refused(corpus, tmp_path, capsys):
    prepared = load_prepared(corpus)
    other = PitchSpec(**{**prepared.pitch.model_dump(), "f0_max": 500.0})
    config = tiny_student_config(speakers=prepared.speakers, excitation=EXCITATION, pitch=other)
    model = save_model(Student(config, prepared.spec), tmp_path / "student")
    args = ["evaluate", "--model", str(model), "--data", str(corpus), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "r.json")]) == 2
    assert "f0_max" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_chunked_nll_of_a_pitch_aware_teacher_equals_one_pass(corpus):
    prepared = load_prepared(corpus)
    torch.manual_seed(0)
    config = tiny_teacher_config(speakers=prepared.speakers, excitation=EXCITATION)
    teacher = Teacher(config, prepared.spec).eval()
    with torch.no_grad():  # the excitation's projection starts at zero: give it a say
        for weight in teacher.excitation.parameters():
            weight.normal_(0, 0.5)
    clips, _ = load_clips(corpus, prepared.spec, prepared.speakers)
    cpu = torch.device("cpu")
    whole = teacher_nll(teacher, clips[:1], cpu, chunk_frames=100_000)
    chunked = teacher_nll(teacher, clips[:1], cpu, chunk_frames=7)
    assert chunked == pytest.approx(whole, rel=1e-6)
    clips[0].id += "-renamed"  # another id, another phase: another excitation
    assert teacher_nll(teacher, clips[:1], cpu) != pytest.approx(whole, rel=1e-6)
