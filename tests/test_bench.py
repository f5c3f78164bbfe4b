import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_student, tiny_teacher
from torch.utils.flop_counter import FlopCounterMode

from training.bench import variants
from training.bench_report import mark_fastest
from wavenet import save_model
from wavenet.cli import main


@pytest.mark.parametrize("overrides", [{}, {"kernel_size": 2, "skip_channels": 4}])
def test_student_flops_per_sample_match_torch_flop_counter(overrides):
    student = tiny_student(**overrides)
    mel = torch.randn(1, 8, 8)
    cond = student.conditioning(mel)
    z = torch.randn(1, 128)
    with FlopCounterMode(display=False) as counter:
        student.flow(z, cond)
    assert counter.get_total_flops() / 128 == student.flops_per_sample


@pytest.mark.parametrize("overrides", [{}, {"kernel_size": 3, "gate_channels": 8}])
def test_teacher_flops_per_sample_match_torch_flop_counter(overrides):
    teacher = tiny_teacher(**overrides)
    cache = teacher.new_cache(1)
    cond = torch.zeros(1, teacher.blocks.config.cond_channels, 1)
    with FlopCounterMode(display=False) as counter:
        teacher.step(cond, cache)
    assert counter.get_total_flops() == teacher.flops_per_sample


STUDENT_YAML = (
    "model:\n  flow_layers: [2]\n  residual_channels: 4\n  gate_channels: 4\n"
    "  skip_channels: 4\n  cond_channels: 4\n"
)
TEACHER_YAML = "model:\n  layers: 2\n  residual_channels: 4\n  gate_channels: 4\n"
QUICK = ["--seconds", "0.05", "0.1", "--batches", "1", "3", "--repeats", "1"]


@pytest.fixture
def layouts(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny student and a tiny teacher layout, as training YAMLs."""
    (tmp_path / "student.yaml").write_text(STUDENT_YAML)
    (tmp_path / "teacher.yaml").write_text(TEACHER_YAML)
    return tmp_path / "student.yaml", tmp_path / "teacher.yaml"


def test_bench_reports_every_case_of_a_checkpoint_and_a_layout(tmp_path, layouts, capsys):
    checkpoint = save_model(tiny_student(), tmp_path / "student")
    teacher = save_model(tiny_teacher(layers=2), tmp_path / "teacher")
    args = ["bench", "--model", str(checkpoint), str(layouts[0]), "--teacher", str(teacher)]
    out = tmp_path / "bench.json"
    assert main([*args, *QUICK, "--teacher-frames", "1", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == report
    assert report["device"] == "cpu" and report["matmul_peak_gflops"] > 0
    teacher_speed = report["teacher"]["samples_per_s"]
    assert report["teacher"]["source"] == "checkpoint" and teacher_speed > 0
    assert report["teacher"]["peak_memory_mb"] > 0
    assert [entry["source"] for entry in report["students"].values()] == ["checkpoint", "config"]
    for entry in report["students"].values():
        cases = {(case["batch"], case["seconds"]): case for case in entry["cases"]}
        assert sorted(cases) == [(1, 0.05), (1, 0.1), (3, 0.05), (3, 0.1)]
        for case in cases.values():
            assert case["variant"] == "fp32" and case["fastest"]
            for field in ("samples_per_s", "real_time_factor", "gflops", "fraction_of_peak"):
                assert case[field] > 0, field
            assert case["peak_memory_mb"] > 0
            assert case["vs_teacher"] == pytest.approx(case["samples_per_s"] / teacher_speed)
    # The checkpoint keeps its own FeatureSpec (8 kHz); a layout gets the default (16 kHz).
    assert [entry["sample_rate"] for entry in report["students"].values()] == [8000, 16000]


def test_bench_table_names_each_model_and_the_teacher(layouts, capsys):
    student, teacher = layouts
    args = ["bench", "--student", str(student), "--teacher", str(teacher), *QUICK]
    assert main([*args, "--teacher-frames", "1"]) == 0
    table = capsys.readouterr().out
    assert f"| student `{student}` | fp32 | 3 | 0.1 |" in table
    assert f"| teacher `{teacher}` (incremental) | fp32 | 1 |" in table


def test_bench_names_a_missing_config(capsys):
    assert main(["bench", "--student", "nowhere.yaml", "--repeats", "1"]) == 2
    assert "nowhere.yaml: no such config file" in capsys.readouterr().err


def test_bench_refuses_a_path_that_is_no_model(tmp_path, layouts, capsys):
    teacher = str(layouts[1])
    assert main(["bench", "--model", str(tmp_path / "missing"), "--teacher", teacher]) == 2
    error = capsys.readouterr().err
    assert "missing: expected a checkpoint directory or a .yaml config" in error
    checkpoint = save_model(tiny_teacher(layers=2), tmp_path / "teacher")
    assert main(["bench", "--model", str(checkpoint), "--teacher", teacher]) == 2
    assert "a teacher checkpoint, where a student is needed" in capsys.readouterr().err


def test_bench_refuses_cuda_without_a_gpu(monkeypatch, layouts, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    student, teacher = (str(path) for path in layouts)
    assert main(["bench", "--model", student, "--teacher", teacher, "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def test_gpu_variants_add_half_precision_and_compiled_flows():
    names = [variant.name for variant in variants(torch.device("cuda"), compile=True)]
    assert names == ["fp32", "fp16", "fp32+compile", "fp16+compile"]
    assert [variant.name for variant in variants(torch.device("cpu"), compile=False)] == ["fp32"]
    assert [variant.name for variant in variants(torch.device("cpu"), compile=True)] == ["fp32"]


def test_the_fastest_variant_of_each_case_is_marked():
    cases = [
        {"variant": "fp32", "batch": 1, "seconds": 1.0, "samples_per_s": 10.0},
        {"variant": "fp16", "batch": 1, "seconds": 1.0, "samples_per_s": 30.0},
        {"variant": "fp32", "batch": 4, "seconds": 1.0, "samples_per_s": 50.0},
        {"variant": "fp16", "batch": 4, "seconds": 1.0, "error": "no kernel"},
    ]
    mark_fastest(cases)
    assert [case["fastest"] for case in cases] == [False, True, True, False]
