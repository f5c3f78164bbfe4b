"""Checks shared by the training-run tests: SIGKILL then resume, and DDP on two CPU processes.

Each takes the job's command line (`python -m wavenet.cli <job> ...` without --steps), so
train-teacher, train-classifier and distill are held to the same behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from training.monitor import read_metrics
from training.state import load_state
from wavenet.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses share two cores with the test runner: one thread each avoids oversubscription.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def kill_after_a_checkpoint(command: list[str], run: Path) -> int:
    """Start a long run, SIGKILL it once it has saved a checkpoint and logged a later step,
    and return the step that checkpoint holds (after checking it loads)."""
    process = subprocess.Popen(
        [*command, "--steps", "100000"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_checkpoint_and_progress(run, process)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    saved = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    assert load_state(run / "checkpoint")["step"] == saved
    load_model(run / "model")
    return saved


def stop_with_sigterm(command: list[str], run: Path) -> int:
    """Start a long run that never checkpoints on its own, send SIGTERM once it has logged
    two steps, and return the step of the checkpoint it saved on its way out."""
    process = subprocess.Popen(
        [*command, "--steps", "100000"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 90
        while not any(r["step"] >= 2 for r in read_metrics(run)):
            assert process.poll() is None, "the training process ended early"
            assert time.monotonic() < deadline, "no two steps logged within 90 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    saved = load_state(run / "checkpoint")["step"]
    assert saved == read_metrics(run)[-1]["step"], "the checkpoint holds the last step trained"
    assert f"stopped by signal {int(signal.SIGTERM)} after step {saved}" in stderr.decode()
    assert json.loads((run / "model" / "config.json").read_text())["extra"]["step"] == saved
    return saved


def _wait_for_checkpoint_and_progress(run: Path, process: subprocess.Popen) -> None:
    """Poll until a checkpoint exists and the run has logged a later step."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, "the training process ended early"
        state = run / "checkpoint" / "state.json"
        if state.is_file():
            saved = json.loads(state.read_text())["step"]
            if any(r["step"] > saved for r in read_metrics(run)):
                return
        time.sleep(0.05)
    raise AssertionError("no checkpoint followed by progress within 90 s")


def resume_two_more_steps(command: list[str], run: Path, saved: int) -> None:
    """Resume a killed run to `saved + 2`: each step logged once, in order, and the
    checkpoint and the saved model at the new step."""
    result = subprocess.run(
        [*command, "--resume", "--steps", str(saved + 2)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    steps = [record["step"] for record in read_metrics(run)]
    assert steps == list(range(1, saved + 3)), "each step logged once, in order"
    assert load_state(run / "checkpoint")["step"] == saved + 2
    assert json.loads((run / "model" / "config.json").read_text())["extra"]["step"] == saved + 2
    load_model(run / "model")


def run_ddp_three_steps(command: list[str], run: Path, held_out_key: str) -> None:
    """Run `command` under torchrun with two CPU processes for three steps, logging each
    step and scoring held-out data at the last: one checkpoint, metrics from rank 0 only."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        [*launcher, "--nproc_per_node", "2", *command[1:], "--steps", "3"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_state(run / "checkpoint")["step"] == 3
    assert sorted(p.name for p in run.iterdir() if "checkpoint" in p.name) == ["checkpoint"]
    load_model(run / "model")
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3], "rank 0 alone writes the metrics"
    assert held_out_key in records[-1]


def tensorboard_tags(directory: Path) -> dict:
    """Scalar, audio and image tags written under a run's tensorboard/ folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"audio": 0, "images": 0})
    return events.Reload().Tags()
