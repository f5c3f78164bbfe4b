"""Starting and resuming a training run: the checks, the process group, the model, the loop.

Every job (`train-teacher`, `train-classifier`, `distill`) enters through `open_run` (checks
and inputs, before anything is written) and `run_job` (alone, or as one rank under torchrun).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from training import distributed
from training.config import ConfigError
from training.dataset import PreparedCorpus, load_prepared
from training.loop import Job, TrainingRun, fit
from training.monitor import RunLog
from training.optim import ema_copy
from training.run_config import CONFIG_FILE, RunConfig, RunConfigT, config_source, save_config
from training.state import has_state, load_state, restore_rng

__all__ = ["new_run", "open_run", "restore_checkpoint", "run_job"]


def new_run(
    config: RunConfig,
    corpus: PreparedCorpus,
    processes: distributed.Processes,
    out: Path,
    model: nn.Module,
) -> TrainingRun:
    """Wrap a freshly initialised `model` (on its device, in train mode) with EMA and Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.adam_betas)
    fp16 = processes.device.type == "cuda" and config.amp == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    module = distributed.wrap(model, processes)
    return TrainingRun(
        config, corpus, processes, out, model, module, ema_copy(model), optimizer, scaler
    )


def restore_checkpoint(run: TrainingRun) -> int:
    """Load RUN/checkpoint into `run` (on every rank); returns the step it was saved at."""
    state = load_state(run.out / "checkpoint")
    run.model.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    if run.processes.is_main:
        restore_rng(state["rng"])
    run.best = state.get("best")
    return int(state["step"])


def open_run(
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None,
    steps: int | None,
    resume: bool,
    resolve: Callable[[str | Path | None, list[str], int | None], RunConfigT],
) -> tuple[Path, PreparedCorpus, RunConfigT]:
    """The checks and inputs every job starts with, before anything is written.

    Args:
        data (str | Path): A folder written by `wavenet prepare`.
        out (str | Path): The run directory.
        config_path (str | Path | None): YAML config; on resume, RUN/config.yaml by default.
        steps (int | None): Total steps, overriding the config.
        resume (bool): Continue from RUN/checkpoint.
        resolve (Callable): The job's config loader: (path, corpus speakers, steps) -> config.

    Returns:
        tuple: The run directory, the corpus and the resolved config.

    Raises:
        ConfigError: for a bad config or data folder, or a run directory that holds a
            checkpoint when `resume` is off (or none when it is on).
    """
    out = Path(out)
    if resume and not has_state(out / "checkpoint"):
        raise ConfigError(f"{out}: no checkpoint to resume from")
    if not resume and has_state(out / "checkpoint"):
        raise ConfigError(f"{out}: already holds a checkpoint; pass --resume or another --out")
    corpus = load_prepared(data)
    config = resolve(config_source(config_path, out, resume), corpus.speakers, steps)
    return out, corpus, config


def run_job(
    config: RunConfig,
    corpus: PreparedCorpus,
    out: Path,
    resume: bool,
    device: torch.device,
    build_model: Callable[[], nn.Module],
    make_job: Callable[[distributed.Processes], Job],
) -> Path:
    """Run a job alone or as one rank under torchrun; returns RUN/model, the EMA model.

    Args:
        config (RunConfig): The resolved config, saved to RUN/config.yaml.
        corpus (PreparedCorpus): The training data.
        out (Path): The run directory (config.yaml, metrics.jsonl, tensorboard/,
            checkpoint/, model/).
        resume (bool): Continue from RUN/checkpoint.
        device (torch.device): Where to train (each DDP rank takes its local GPU).
        build_model (Callable): A new model to train, built after seeding with config.seed.
        make_job (Callable): The job, given where this process stands (after the run
            directory exists, so rank 0 may write to it).
    """
    processes = distributed.setup(device)
    try:
        if processes.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / CONFIG_FILE)
        job = make_job(processes)
        torch.manual_seed(config.seed)
        model = build_model().to(processes.device).train()
        run = new_run(config, corpus, processes, out, model)
        start_step = restore_checkpoint(run) if resume else 0
        log = RunLog(out, start_step, processes.is_main)
        try:
            fit(run, job, log, start_step)
        finally:
            log.close()
    finally:
        distributed.teardown(processes)
    return out / "model"
