"""The default-model script, end to end on a tiny corpus with tiny configs."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wavenet import load_model

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "train-default-model.sh"
CONFIGS = ROOT / "training" / "configs"


def run_script(
    work: Path, out: Path, student_steps: int, student_config: Path
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WAVENET": str(Path(sys.executable).parent / "wavenet"),
        "WORK": str(work),
        "OUT": str(out),
        "MINUTES": "0.1",
        "VOICES": "kal16 slt",
        "PITCH_CONFIG": str(CONFIGS / "pitch_tiny.yaml"),
        "TEACHER_CONFIG": str(CONFIGS / "tiny.yaml"),
        "CLASSIFIER_CONFIG": str(CONFIGS / "classifier_tiny.yaml"),
        "STUDENT_CONFIG": str(student_config),
        "PITCH_STEPS": "2",
        "TEACHER_STEPS": "2",
        "CLASSIFIER_STEPS": "2",
        "STUDENT_STEPS": str(student_steps),
        "DEVICE": "cpu",
        "EVAL_SECONDS": "2",
    }
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian's flite")
@pytest.mark.timeout(900)
def test_script_trains_ships_and_resumes(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    # The student keeps its best-scoring model, as the shipped student's config does.
    student_config = tmp_path / "student.yaml"
    config = yaml.safe_load((CONFIGS / "student_tiny.yaml").read_text())
    student_config.write_text(yaml.safe_dump({**config, "keep_best": "val_log_mel_l1"}))
    run_script(work, out, student_steps=2, student_config=student_config)
    spec_json = json.loads((work / "prepared" / "feature_spec.json").read_text())
    models = {part: load_model(out / part) for part in ("teacher", "classifier", "student")}
    assert [m.kind for m in models.values()] == ["teacher", "classifier", "student"]
    assert load_model(out / "pitch").kind == "pitch"
    pitch_report = json.loads((out / "runs" / "pitch" / "eval.json").read_text())
    assert pitch_report["kind"] == "pitch"
    assert all(m.spec.model_dump(mode="json") == spec_json for m in models.values())
    entry = json.loads((work / "prepared" / "manifest.jsonl").read_text().splitlines()[0])
    mel = torch.from_numpy(np.load(work / "prepared" / entry["mel"])).unsqueeze(0)
    audio = models["student"].generate(mel)
    assert audio.shape == (1, entry["frames"] * spec_json["hop_length"])
    assert torch.isfinite(audio).all()
    for part in ("teacher", "student"):
        report = json.loads((work / "runs" / part / "eval.json").read_text())
        assert report["kind"] == part and report["sample_rate"] == spec_json["sample_rate"]
        model_row, baseline_row = report["rows"]
        assert model_row["system"] == f"{part} copy synthesis"
        assert baseline_row["system"].startswith("Griffin-Lim")
        assert math.isfinite(model_row["log_mel_l1"]) and model_row["log_mel_l1"] > 0
        assert report["clips"] and all(clip["seconds"] > 0 for clip in report["clips"])
        assert json.loads((out / "runs" / part / "eval.json").read_text()) == report
    teacher_report, student_report = (
        json.loads((work / "runs" / part / "eval.json").read_text())
        for part in ("teacher", "student")
    )
    assert 0 < teacher_report["nll_bits_per_sample"] < 9  # a tiny teacher: near 8 (uniform)
    kl = student_report["kl_to_teacher"]
    assert kl["kl"] == pytest.approx(kl["cross_entropy"] - kl["entropy"], abs=1e-4)

    assert all((out / "runs" / part / "checkpoint").is_dir() for part in models)
    # What ships is the student's best-scoring model, and its report scores that one.
    best = work / "runs" / "student" / "best"
    assert (out / "runs" / "student" / "best").is_dir()
    assert (out / "student" / "model.safetensors").read_bytes() == (
        best / "model.safetensors"
    ).read_bytes()
    assert student_report["model"] == str(best)

    # A fresh machine keeps the corpus recipe and models/default, not the work folder's runs.
    shutil.rmtree(work / "runs")
    corpus_manifest = work / "corpus" / "manifest.csv"
    built = corpus_manifest.stat().st_mtime_ns
    run_script(work, out, student_steps=3, student_config=student_config)
    assert corpus_manifest.stat().st_mtime_ns == built, "the corpus was built again"
    assert steps(work / "runs" / "teacher")[-1] == 2
    assert steps(work / "runs" / "student")[-1] == 3
