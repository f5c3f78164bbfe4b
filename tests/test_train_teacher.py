"""Teacher training: loss goes down, outputs and checkpoints, exact resume, SIGKILL, SIGTERM,
DDP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from run_checks import (
    ROOT,
    kill_after_a_checkpoint,
    resume_two_more_steps,
    run_ddp_three_steps,
    stop_with_sigterm,
    tensorboard_tags,
)
from safetensors.torch import load_file

from training import distributed
from training.config import ConfigError
from training.dataset import SegmentCrops, load_prepared, make_loader, validation_items
from training.monitor import read_metrics
from training.state import load_state
from training.teacher_config import TeacherTrainConfig, resolve_config
from training.train_teacher import (
    build_run,
    held_out_nll,
    teacher_losses,
    to_device,
    train_step,
    train_teacher,
)
from wavenet.checkpoint import load_model
from wavenet.cli import main

TINY = ROOT / "training" / "configs" / "tiny.yaml"


def tiny_config_file(directory: Path, **overrides) -> Path:
    """tiny.yaml with some keys replaced, written to `directory`."""
    config = yaml.safe_load(TINY.read_text())
    config.update(overrides)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_shipped_configs_load():
    for name in ("teacher.yaml", "tiny.yaml"):
        config = resolve_config(ROOT / "training" / "configs" / name, ["a", "b"])
        assert isinstance(config, TeacherTrainConfig)
        assert config.model.speakers == ["a", "b"]


def test_a_few_steps_lower_the_held_out_loss_clearly(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    config = resolve_config(TINY, corpus.speakers).model_copy(update={"segment_frames": 2})
    run = build_run(config, corpus, distributed.Processes(0, 1, torch.device("cpu")), Path())
    held_out = SegmentCrops(corpus.val, corpus.spec, 8, seed=123)
    fixed = to_device(next(iter(make_loader(held_out, 0, 1, 4, 0))), torch.device("cpu"), True)

    def nll() -> float:
        with torch.no_grad():
            return float(teacher_losses(run.model, fixed, quantize_input=True)["nll"])

    before = nll()
    crops = SegmentCrops(corpus.train, corpus.spec, config.segment_frames, seed=0)
    for step, batch in enumerate(make_loader(crops, 0, 80, config.batch_size, 0)):
        losses = train_step(run, to_device(batch, torch.device("cpu"), True), step)
        assert set(losses) == {"nll", "grad_norm", "lr"}
    after = nll()
    assert before > 7.5, "an untrained teacher is close to uniform over 256 classes (8 bits)"
    assert after < before - 0.5, (before, after)


def test_cli_run_writes_config_metrics_logs_checkpoint_and_a_loadable_ema_model(
    prepared_corpus, tmp_path
):
    run = tmp_path / "run"
    config = tiny_config_file(tmp_path, log_every=2, eval_every=4, sample_every=4)
    assert (
        main(
            [
                "train-teacher",
                "--data",
                str(prepared_corpus),
                "--out",
                str(run),
                "--config",
                str(config),
                "--steps",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    saved = resolve_config(run / "config.yaml", load_prepared(prepared_corpus).speakers)
    assert saved.steps == 4 and saved.model.speakers == ["awb", "kal16", "kal_diphone", "slt"]
    records = read_metrics(run)
    assert [r["step"] for r in records] == [2, 4]
    assert {"nll", "lr", "samples_per_s", "grad_norm"} <= records[0].keys()
    assert "val_nll" not in records[0] and 0 < records[1]["val_nll"] < 9
    state = load_state(run / "checkpoint")
    assert state["step"] == 4
    model = load_model(run / "model")
    assert json.loads((run / "model" / "config.json").read_text())["extra"]["step"] == 4
    weights = load_file(run / "model" / "model.safetensors")
    for name, tensor in state["ema"].items():
        torch.testing.assert_close(weights[name], tensor)
    assert any(not torch.equal(state["ema"][n], state["model"][n]) for n in state["model"])
    assert model.config.speakers == saved.model.speakers
    tags = tensorboard_tags(run / "tensorboard")
    assert {"train/nll", "train/lr", "val/nll"} <= set(tags["scalars"])
    assert {"sample/generated", "sample/real"} <= set(tags["audio"])
    assert "sample/mel_real_vs_generated" in tags["images"]
    # The run holds a checkpoint: starting it again without --resume is refused.
    assert (
        main(
            [
                "train-teacher",
                "--data",
                str(prepared_corpus),
                "--out",
                str(run),
                "--config",
                str(config),
                "--device",
                "cpu",
            ]
        )
        == 2
    )


def test_resumed_training_equals_uninterrupted_training(prepared_corpus, tmp_path):
    config = tiny_config_file(tmp_path, log_every=1, eval_every=4, sample_every=0)
    train_teacher(prepared_corpus, tmp_path / "whole", config, steps=4)
    train_teacher(prepared_corpus, tmp_path / "split", config, steps=2)
    train_teacher(prepared_corpus, tmp_path / "split", steps=4, resume=True)
    whole, split = (
        load_state(tmp_path / "whole/checkpoint"),
        load_state(tmp_path / "split/checkpoint"),
    )
    assert whole["step"] == split["step"] == 4
    for part in ("model", "ema"):
        for name, tensor in whole[part].items():
            torch.testing.assert_close(split[part][name], tensor, rtol=1e-5, atol=1e-6)
    whole_log, split_log = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    assert [r["step"] for r in split_log] == [r["step"] for r in whole_log] == [1, 2, 3, 4]
    assert [r["nll"] for r in split_log] == pytest.approx([r["nll"] for r in whole_log], rel=1e-5)


def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(prepared_corpus, tmp_path):
    run = tmp_path / "run"
    config = tiny_config_file(
        tmp_path, log_every=1, eval_every=1000, sample_every=0, checkpoint_every=3, segment_frames=2
    )
    command = teacher_command(prepared_corpus, run, config)
    saved = kill_after_a_checkpoint(command, run)
    resume_two_more_steps(command, run, saved)
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint",
        "config.yaml",
        "metrics.jsonl",
        "model",
        "tensorboard",
    ]


def test_sigterm_stops_after_the_step_with_a_checkpoint_that_resumes(prepared_corpus, tmp_path):
    run = tmp_path / "run"
    config = tiny_config_file(
        tmp_path, log_every=1, eval_every=1000, sample_every=0, checkpoint_every=1000
    )
    command = teacher_command(prepared_corpus, run, config)
    resume_two_more_steps(command, run, stop_with_sigterm(command, run))


def teacher_command(data: Path, run: Path, config: Path) -> list[str]:
    """`python -m wavenet.cli train-teacher ...` on the CPU, without --steps."""
    return [
        sys.executable,
        *("-m", "wavenet.cli", "train-teacher"),
        *("--data", str(data), "--out", str(run), "--config", str(config), "--device", "cpu"),
    ]


def test_ddp_with_two_cpu_processes_trains_and_writes_one_checkpoint(prepared_corpus, tmp_path):
    run = tmp_path / "run"
    config = tiny_config_file(
        tmp_path, log_every=1, eval_every=3, sample_every=0, checkpoint_every=1000, segment_frames=2
    )
    run_ddp_three_steps(teacher_command(prepared_corpus, run, config), run, "val_nll")


def test_an_unknown_config_key_fails_naming_it(prepared_corpus, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  layrs: 4\nbatch_size: 2\n")
    code = main(
        [
            "train-teacher",
            "--data",
            str(prepared_corpus),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(config),
            "--device",
            "cpu",
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert len(error.splitlines()) == 1 and "model.layrs" in error, error
    assert not (tmp_path / "run").exists()


def best_of(run: Path) -> tuple[int, float]:
    """The step and val_nll RUN/best says it holds."""
    extra = json.loads((run / "best" / "config.json").read_text())["extra"]
    return extra["step"], extra["val_nll"]


def rescored(run: Path, corpus) -> float:
    """RUN/best's held-out NLL, computed again on the items the run scored."""
    config = resolve_config(run / "config.yaml", corpus.speakers)
    items = validation_items(corpus, config.val_utterances, config.val_frames)
    with torch.no_grad():
        return held_out_nll(load_model(run / "best"), items, torch.device("cpu"), True)


def test_keep_best_holds_the_lowest_scoring_model_from_the_untrained_start_on(
    prepared_corpus, tmp_path
):
    corpus = load_prepared(prepared_corpus)
    run = tmp_path / "run"
    config = tiny_config_file(
        tmp_path, log_every=1, eval_every=1, sample_every=0, keep_best="val_nll"
    )
    train_teacher(prepared_corpus, run, config, steps=3)
    train_teacher(prepared_corpus, run, steps=6, resume=True)
    scores = {r["step"]: r["val_nll"] for r in read_metrics(run)}
    assert sorted(scores) == [0, 1, 2, 3, 4, 5, 6]  # the untrained start is scored first
    step, score = best_of(run)
    assert score == min(scores.values()) and scores[step] == score
    assert load_state(run / "checkpoint")["best"] == {"step": step, "score": score}
    assert rescored(run, corpus) == pytest.approx(score, rel=1e-5)

    # A rate that wrecks the model: the untrained start stays the best.
    wrecked = tmp_path / "wrecked"
    config = tiny_config_file(
        tmp_path, log_every=1, eval_every=1, sample_every=0, keep_best="val_nll", lr=5.0
    )
    train_teacher(prepared_corpus, wrecked, config, steps=3)
    scores = {r["step"]: r["val_nll"] for r in read_metrics(wrecked)}
    assert best_of(wrecked) == (0, scores[0]) and min(scores[1], scores[2], scores[3]) > scores[0]
    assert rescored(wrecked, corpus) == pytest.approx(scores[0], rel=1e-5)
    best = load_file(wrecked / "best" / "model.safetensors")
    last = load_file(wrecked / "model" / "model.safetensors")
    assert any(not torch.equal(best[name], last[name]) for name in best)


def test_keep_best_names_the_scores_a_job_reports_when_given_another(prepared_corpus, tmp_path):
    config = tiny_config_file(tmp_path, sample_every=0, keep_best="val_loss")
    with pytest.raises(ConfigError, match=r"keep_best 'val_loss'.*\['val_nll'\]"):
        train_teacher(prepared_corpus, tmp_path / "run", config, steps=1)
