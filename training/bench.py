"""`wavenet bench`: how fast the student and the teacher make audio on one device.

In one run, on one device: the student's samples per second and real-time factor for each
batch size and utterance length (from random mels), the teacher's incremental (Fast WaveNet)
samples per second on a short clip, the ratio of the two, the peak memory of each case, and
the FLOP/s achieved against the device's measured matmul peak. Each time is the median of
repeated runs after a warm-up run. On CUDA the student also runs under fp16 autocast, and
with `compile` each precision is also tried with `torch.compile`; every variant is reported
and the fastest one of each case is marked.

A model is a checkpoint directory (its trained weights) or a training YAML (its layout with
random weights, which run exactly as fast).
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from training.bench_report import format_table, mark_fastest
from training.config import ConfigError, read_yaml
from training.speed import (
    matmul_peak_gflops,
    median_seconds,
    peak_memory_mb,
    reset_peak_memory,
)
from wavenet import FeatureSpec, Student, StudentConfig, Teacher, TeacherConfig, load_model
from wavenet.checkpoint import read_config

__all__ = ["load_benched", "measure", "resolve_model", "run", "student_layout", "teacher_layout"]

SHIPPED_CONFIGS = Path(__file__).parent / "configs"
# What is benched when no model is named: the shipped default model when it is there.
DEFAULT_STUDENT = ("models/default/student", "student_cpu.yaml")
DEFAULT_TEACHER = ("models/default/teacher", "teacher.yaml")


def read_model_section(path: str | Path) -> dict:
    """The `model` section of a training YAML; a bare file name may name a shipped config."""
    path = Path(path)
    if not path.exists() and path.parent == Path(".") and (SHIPPED_CONFIGS / path).exists():
        path = SHIPPED_CONFIGS / path
    data = read_yaml(path)
    return data.get("model", data)


def _layout(path: str | Path, schema: type[StudentConfig] | type[TeacherConfig]):
    try:
        return schema.model_validate(read_model_section(path))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: model.{where}: {first['msg']}") from None


def student_layout(path: str | Path) -> StudentConfig:
    """The student architecture of a distillation YAML (or of a bare StudentConfig YAML)."""
    return _layout(path, StudentConfig)


def teacher_layout(path: str | Path) -> TeacherConfig:
    """The teacher architecture of a teacher training YAML."""
    return _layout(path, TeacherConfig)


def resolve_model(path: str | None, kind: str) -> str:
    """`path`, or the default model of `kind` (the shipped checkpoint when present)."""
    if path is not None:
        return path
    checkpoint, config = DEFAULT_STUDENT if kind == "student" else DEFAULT_TEACHER
    return checkpoint if Path(checkpoint).is_dir() else config


def check_model_path(path: str, kind: str) -> None:
    """Fail before any timing on a path that cannot be benched as a `kind`.

    Raises:
        ConfigError: if `path` is neither a directory nor a .yaml file, or holds another kind.
        CheckpointError: if the directory is not a readable checkpoint.
    """
    location = Path(path)
    if location.is_dir():
        found = read_config(location)["kind"]
        if found != kind:
            raise ConfigError(f"{path}: a {found} checkpoint, where a {kind} is needed")
    elif location.suffix in (".yaml", ".yml"):
        _layout(path, StudentConfig if kind == "student" else TeacherConfig)
    else:
        found = "a file" if location.exists() else "nothing"
        raise ConfigError(
            f"{path}: expected a checkpoint directory or a .yaml config, but there is {found} there"
        )


def load_benched(path: str, kind: str, device: torch.device) -> tuple[nn.Module, str]:
    """The model at `path` on `device`, and whether it came from a checkpoint or a config."""
    check_model_path(path, kind)
    if Path(path).is_dir():
        return load_model(path, device=device), "checkpoint"
    torch.manual_seed(0)
    if kind == "student":
        model = Student(student_layout(path), FeatureSpec())
    else:
        model = Teacher(teacher_layout(path), FeatureSpec())
    return model.to(device).eval(), "config"


@dataclass(frozen=True)
class Variant:
    """One way of running the student: its precision, and whether its flows are compiled."""

    name: str
    half: bool = False
    compiled: bool = False


def variants(device: torch.device, compile: bool) -> list[Variant]:
    """fp32 always; on CUDA, fp16 autocast too, and each of them compiled when asked.

    Compiling is for CUDA alone: on CPU the student generates through the fused matrix
    products of `wavenet.flow_inference`, not through the `flow` modules it would compile.
    """
    chosen = [Variant("fp32")]
    if device.type == "cuda":
        chosen.append(Variant("fp16", half=True))
    if compile and device.type == "cuda":
        chosen += [Variant(f"{v.name}+compile", v.half, compiled=True) for v in chosen]
    return chosen


@contextlib.contextmanager
def running_as(student: Student, variant: Variant, device: torch.device) -> Iterator[None]:
    """Within this block the student runs as `variant` (autocast, compiled flows)."""
    with contextlib.ExitStack() as stack:
        if variant.half:
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        if variant.compiled:
            # On CUDA, reduce-overhead replays the flows as CUDA graphs.
            mode = "reduce-overhead" if device.type == "cuda" else "default"
            student.flow = torch.compile(student.flow, mode=mode)
            # Afterwards: the uncompiled method again, and no compiled code left over for the
            # next variant to trip on (a precision change would count as a recompilation).
            stack.callback(torch.compiler.reset)
            stack.callback(delattr, student, "flow")
        yield


def random_inputs(model: nn.Module, batch: int, frames: int, device: torch.device):
    """A log-mel-like input (batch, n_mels, frames) and speaker ids (None if single-speaker)."""
    mel = torch.randn(batch, model.spec.n_mels, frames, device=device) - 5.0
    speakers = None
    if model.config.speakers:
        speakers = torch.zeros(batch, dtype=torch.long, device=device)
    return mel, speakers


def random_pitch(model: nn.Module, batch: int, frames: int, device: torch.device) -> dict:
    """A pitch-aware model's F0 (batch, frames): a 120 Hz voice, every fifth frame unvoiced
    (the source's cost grows with the harmonics below Nyquist, 67 at 120 Hz); {} without."""
    if getattr(model.config, "excitation", None) is None:
        return {}
    f0 = torch.full((batch, frames), 120.0, device=device)
    f0[:, ::5] = 0.0
    return {"f0": f0}


def bench_student_case(
    student: Student, batch: int, seconds: float, repeats: int, device: torch.device, warmups: int
) -> dict:
    """Samples per second of `student.generate` on `batch` utterances of `seconds` each."""
    spec = student.spec
    frames = spec.frames_for(round(seconds * spec.sample_rate))
    mel, speakers = random_inputs(student, batch, frames, device)
    pitch = random_pitch(student, batch, frames, device)
    reset_peak_memory(device)
    elapsed = median_seconds(
        lambda: student.generate(mel, speakers, **pitch), repeats, device, warmups
    )
    samples_per_s = batch * spec.samples_for(frames) / elapsed
    return {
        "samples_per_s": samples_per_s,
        "real_time_factor": samples_per_s / spec.sample_rate,
        "peak_memory_mb": peak_memory_mb(device),
    }


def bench_student(student: Student, options: dict, device: torch.device, peaks: dict) -> list:
    """Every case of every variant; achieved GFLOP/s against the peak of its precision."""
    flops = student.flops_per_sample
    cases = []
    for variant in variants(device, options["compile"]):
        # CUDA graphs are recorded on a shape's second call: warm up twice when compiled.
        warmups = 2 if variant.compiled else 1
        with running_as(student, variant, device):
            for seconds in sorted(options["seconds"]):
                for batch in sorted(options["batches"]):
                    print(f"  {variant.name}, batch {batch}, {seconds:g} s", file=sys.stderr)
                    case = {"variant": variant.name, "batch": batch, "seconds": seconds}
                    try:
                        case |= bench_student_case(
                            student, batch, seconds, options["repeats"], device, warmups
                        )
                    except Exception as error:
                        # An optional speed-up this machine cannot run is reported, not fatal.
                        if variant == Variant("fp32"):
                            raise
                        cases.append(case | {"error": f"{type(error).__name__}: {error}"})
                        continue
                    case["gflops"] = flops * case["samples_per_s"] / 1e9
                    peak = peaks["fp16" if variant.half else "fp32"]
                    case["fraction_of_peak"] = case["gflops"] / peak
                    cases.append(case)
    return cases


def bench_teacher(teacher: Teacher, frames: int, repeats: int, device: torch.device) -> dict:
    """Samples per second of incremental (cached) teacher sampling, batch 1, fp32."""
    mel, speakers = random_inputs(teacher, 1, frames, device)
    pitch = random_pitch(teacher, 1, frames, device)
    reset_peak_memory(device)
    elapsed = median_seconds(lambda: teacher.generate(mel, speakers, **pitch), repeats, device)
    samples = teacher.spec.samples_for(frames)
    return {
        "frames": frames,
        "seconds": samples / teacher.spec.sample_rate,
        "samples_per_s": samples / elapsed,
        "peak_memory_mb": peak_memory_mb(device),
    }


def describe(model: nn.Module, path: str, source: str) -> dict:
    """What was benched: where from, its size and its FLOPs per sample."""
    return {
        "path": path,
        "source": source,
        "parameters": sum(p.numel() for p in model.parameters()),
        "receptive_field": model.receptive_field,
        "sample_rate": model.spec.sample_rate,
        "mflops_per_sample": model.flops_per_sample / 1e6,
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def measure(students: list[str], teacher_path: str, device: torch.device, options: dict) -> dict:
    """The whole report. `options`: seconds, batches, repeats, teacher_frames, compile."""
    check_model_path(teacher_path, "teacher")
    for path in students:
        check_model_path(path, "student")
    # Larger products get closer to a GPU's peak; 2048 already saturates a CPU.
    size = 4096 if device.type == "cuda" else 2048
    peaks = {"fp32": matmul_peak_gflops(size, device=device)}
    if device.type == "cuda":
        peaks["fp16"] = matmul_peak_gflops(size, device=device, dtype=torch.float16)
    report: dict = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflops": peaks["fp32"],
    }
    if "fp16" in peaks:
        report["matmul_peak_gflops_fp16"] = peaks["fp16"]
    print(f"teacher {teacher_path}", file=sys.stderr)
    teacher, source = load_benched(teacher_path, "teacher", device)
    result = bench_teacher(teacher, options["teacher_frames"], options["repeats"], device)
    result["gflops"] = teacher.flops_per_sample * result["samples_per_s"] / 1e9
    result["fraction_of_peak"] = result["gflops"] / peaks["fp32"]
    report["teacher"] = describe(teacher, teacher_path, source) | result
    del teacher
    report["students"] = {}
    for path in students:
        print(f"student {path}", file=sys.stderr)
        student, source = load_benched(path, "student", device)
        entry = describe(student, path, source)
        entry["cases"] = bench_student(student, options, device, peaks)
        for case in entry["cases"]:
            if "samples_per_s" in case:
                case["vs_teacher"] = case["samples_per_s"] / result["samples_per_s"]
        mark_fastest(entry["cases"])
        report["students"][path] = entry
    return report


def run(args, device: torch.device) -> dict:
    """Entry point of `wavenet bench`: prints a markdown table (or JSON) and writes JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    students = args.model or [resolve_model(None, "student")]
    options = {
        "seconds": args.seconds,
        "batches": args.batches,
        "repeats": args.repeats,
        "teacher_frames": args.teacher_frames,
        "compile": args.compile,
    }
    report = measure(students, resolve_model(args.teacher, "teacher"), device, options)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report
