"""`wavenet bench`: how fast the student and the teacher make audio on this machine.

Reports, for each student layout, the real-time factor of `Student.generate` (batch 1, from
mel), its FLOPs per output sample against the measured fp32 matmul peak, and the teacher's
incremental (Fast WaveNet) samples per second in the same run, so the ratio of the two is
measured on one machine under one load. Medians of repeated runs.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from training.config import ConfigError
from wavenet import FeatureSpec, Student, StudentConfig, Teacher, TeacherConfig

__all__ = ["matmul_peak_gflops", "student_flops_per_sample", "teacher_flops_per_sample"]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `run` over `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of one large square matmul: 2 * size^3 FLOPs per product."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def _stack_flops(layers: int, kernel: int, residual: int, gate: int, skip: int) -> int:
    """Multiply-adds x 2 per sample of a stack of gated residual blocks."""
    per_layer = 2 * gate * residual * kernel + gate * residual + gate * skip
    # The last block has no residual projection.
    return 2 * (layers * per_layer - gate * residual)


def student_flops_per_sample(config: StudentConfig) -> int:
    """FLOPs per output sample of the flows (the frame-rate conditioning is hop times rarer)."""
    total = 0
    for layers in config.flow_layers:
        total += 2 * config.residual_channels  # input 1x1
        total += _stack_flops(
            layers,
            config.kernel_size,
            config.residual_channels,
            config.gate_channels,
            config.skip_channels,
        )
        total += 2 * config.skip_channels * 2  # (mu, log s) head
    return total


def teacher_flops_per_sample(config: TeacherConfig) -> int:
    """FLOPs per generated sample of the teacher's residual stack and output head."""
    stack = _stack_flops(
        config.layers,
        config.kernel_size,
        config.residual_channels,
        config.gate_channels,
        config.skip_channels,
    )
    head = 2 * config.skip_channels * (config.skip_channels + 256)
    return 2 * config.residual_channels + stack + head


SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def read_model_section(path: str | Path) -> dict:
    """The `model` section of a training YAML; a bare file name may name a shipped config."""
    path = Path(path)
    if not path.exists() and path.parent == Path(".") and (SHIPPED_CONFIGS / path).exists():
        path = SHIPPED_CONFIGS / path
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("model", data)


def student_layout(path: str | Path) -> StudentConfig:
    """The student architecture of a distillation YAML (or of a bare StudentConfig YAML)."""
    return StudentConfig.model_validate(read_model_section(path))


def teacher_layout(path: str | Path) -> TeacherConfig:
    """The teacher architecture of a teacher training YAML."""
    return TeacherConfig.model_validate(read_model_section(path))


def bench_student(config: StudentConfig, spec: FeatureSpec, seconds: float, repeats: int) -> dict:
    """Real-time factor of generating `seconds` of audio from random mels, batch 1."""
    torch.manual_seed(0)
    student = Student(config, spec).eval()
    frames = spec.frames_for(int(seconds * spec.sample_rate))
    mel = torch.randn(1, spec.n_mels, frames) - 5.0
    elapsed = median_seconds(lambda: student.generate(mel), repeats)
    audio_seconds = spec.samples_for(frames) / spec.sample_rate
    return {
        "real_time_factor": audio_seconds / elapsed,
        "samples_per_s": spec.samples_for(frames) / elapsed,
        "mflops_per_sample": student_flops_per_sample(config) / 1e6,
        "parameters": sum(p.numel() for p in student.parameters()),
        "receptive_field": student.receptive_field,
    }


def bench_teacher(config: TeacherConfig, spec: FeatureSpec, frames: int, repeats: int) -> dict:
    """Samples per second of incremental (cached) teacher sampling, batch 1."""
    torch.manual_seed(0)
    teacher = Teacher(config, spec).eval()
    mel = torch.randn(1, spec.n_mels, frames) - 5.0
    elapsed = median_seconds(lambda: teacher.generate(mel), repeats)
    return {
        "samples_per_s": spec.samples_for(frames) / elapsed,
        "mflops_per_sample": teacher_flops_per_sample(config) / 1e6,
        "receptive_field": teacher.receptive_field,
    }


def run(args) -> dict:
    """Entry point of `wavenet bench`; prints a table and writes JSON when asked."""
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = FeatureSpec()
    students = {str(path): student_layout(path) for path in args.student}
    teacher_config = teacher_layout(args.teacher)
    peak = matmul_peak_gflops()
    report: dict = {"threads": torch.get_num_threads(), "matmul_peak_gflops": peak, "students": {}}
    for path, config in students.items():
        result = bench_student(config, spec, args.seconds, args.repeats)
        result["fraction_of_peak"] = (
            result["mflops_per_sample"] * result["samples_per_s"] / 1e3 / peak
        )
        report["students"][path] = result
    teacher = bench_teacher(teacher_config, spec, args.teacher_frames, args.repeats)
    report["teacher"] = {"config": str(args.teacher), **teacher}
    for result in report["students"].values():
        result["speedup_over_teacher"] = result["samples_per_s"] / teacher["samples_per_s"]
    print(format_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict) -> str:
    """A markdown table of the report."""
    lines = [
        f"fp32 matmul peak: {report['matmul_peak_gflops']:.1f} GFLOP/s "
        f"({report['threads']} threads)",
        "",
        "| model | x real time | samples/s | MFLOP/sample | % of peak | vs teacher |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in report["students"].items():
        lines.append(
            f"| student {name} | {result['real_time_factor']:.1f} | "
            f"{result['samples_per_s']:,.0f} | {result['mflops_per_sample']:.2f} | "
            f"{100 * result['fraction_of_peak']:.0f} | {result['speedup_over_teacher']:,.0f}x |"
        )
    teacher = report["teacher"]
    lines.append(
        f"| teacher {teacher['config']} (incremental) | - | {teacher['samples_per_s']:,.0f} | "
        f"{teacher['mflops_per_sample']:.2f} | - | 1x |"
    )
    return "\n".join(lines)
