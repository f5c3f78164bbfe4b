import json

import torch
from conftest import tiny_student, tiny_teacher
from torch.utils.flop_counter import FlopCounterMode

from training.bench import student_flops_per_sample, teacher_flops_per_sample
from wavenet.cli import main


def test_student_flop_formula_matches_torch_flop_counter():
    student = tiny_student()
    mel = torch.randn(1, 8, 8)
    cond = student.conditioning(mel)
    z = torch.randn(1, 128)
    with FlopCounterMode(display=False) as counter:
        student.flow(z, cond)
    assert counter.get_total_flops() / 128 == student_flops_per_sample(student.config)


def test_teacher_flop_formula_matches_torch_flop_counter():
    teacher = tiny_teacher()
    cache = teacher.new_cache(1)
    cond = torch.zeros(1, teacher.config.layers * 2 * teacher.config.gate_channels, 1)
    with FlopCounterMode(display=False) as counter:
        teacher.step(cond, cache)
    assert counter.get_total_flops() == teacher_flops_per_sample(teacher.config)


def test_bench_command_reports_both_models(tmp_path, capsys):
    student = tmp_path / "student.yaml"
    student.write_text(
        "model:\n  flow_layers: [2]\n  residual_channels: 4\n  gate_channels: 4\n"
        "  skip_channels: 4\n  cond_channels: 4\n"
    )
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text("model:\n  layers: 2\n  residual_channels: 4\n  gate_channels: 4\n")
    out = tmp_path / "bench.json"
    args = ["bench", "--student", str(student), "--teacher", str(teacher), "--seconds", "0.1"]
    assert main([*args, "--teacher-frames", "1", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["students"][str(student)]
    assert result["real_time_factor"] > 0 and result["speedup_over_teacher"] > 0
    assert report["teacher"]["samples_per_s"] > 0 and report["matmul_peak_gflops"] > 0
    assert "| student" in capsys.readouterr().out


def test_bench_names_a_missing_config(capsys):
    assert main(["bench", "--student", "nowhere.yaml", "--repeats", "1"]) == 2
    assert "nowhere.yaml: no such config file" in capsys.readouterr().err
