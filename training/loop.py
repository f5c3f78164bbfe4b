"""The training loop every job shares: random crops in, optimizer updates, EMA, logs, checkpoints.

A `Job` says what one step computes, how held-out data is scored and which sample is logged;
this module does the rest the same way for the teacher, the classifier and the student:
Adam with warm-up and decay, gradient clipping, an exponential moving average (EMA) of the
weights (the EMA model is evaluated and saved to RUN/model, and with `keep_best` the
best-scoring one to RUN/best), bf16/fp16 autocast on GPU, and
RUN/checkpoint with everything needed to resume: weights, EMA, optimizer, loss scaler, step
and RNG states. Crops are a pure function of (seed, rank, step), so a resumed run sees the
batches an uninterrupted one would have. `training.launch` starts and resumes runs.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from training import distributed
from training.config import ConfigError
from training.dataset import PreparedCorpus, SegmentCrops, make_loader, validation_items
from training.monitor import RunLog
from training.optim import learning_rate, update_ema
from training.run_config import RunConfig
from training.state import capture_rng, save_state
from training.stopping import stop_requests
from wavenet.checkpoint import save_model

__all__ = [
    "Job",
    "TrainingRun",
    "autocast",
    "fit",
    "keep_best_model",
    "optimizer_update",
    "save_checkpoint",
    "set_learning_rate",
    "to_device",
    "weighted_total",
]


@dataclass
class TrainingRun:
    """The objects one training process works with."""

    config: RunConfig
    corpus: PreparedCorpus
    processes: distributed.Processes
    out: Path
    model: nn.Module
    module: nn.Module  # `model`, or its DDP wrapper: the one called in training steps
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    best: dict | None = None  # {"step", "score"} of RUN/best, with `config.keep_best`


class Job:
    """What one kind of training does inside the shared loop; subclasses override `step`."""

    name = "train"  # progress bar label
    headline = "loss"  # the loss shown on the progress bar

    def crops(self, run: TrainingRun) -> Dataset:
        """Training crops keyed by (step, slot): random segments of the train split."""
        config, rank = run.config, run.processes.rank
        return SegmentCrops(
            run.corpus.train, run.corpus.spec, config.segment_frames, config.seed, rank
        )

    def validation(self, run: TrainingRun) -> list[dict]:
        """The fixed held-out items `evaluate` and `sample` receive."""
        return validation_items(run.corpus, run.config.val_utterances, run.config.val_frames)

    def step(self, run: TrainingRun, batch: dict, step: int) -> dict[str, float | None]:
        """One optimizer update; named losses (None for a term that is off), grad_norm, lr."""
        raise NotImplementedError

    def evaluate(self, run: TrainingRun, items: list[dict]) -> dict[str, float]:
        """Held-out scores of the EMA model, named val_*."""
        return {}

    def sample(self, run: TrainingRun, log: RunLog, step: int, item: dict) -> None:
        """Log generated audio for a held-out item (rank 0 only)."""

    def model_extra(self, run: TrainingRun) -> dict:
        """Metadata stored in RUN/model/config.json besides the step and the data folder."""
        return {}

    def saved(self, run: TrainingRun, model_dir: Path) -> None:
        """Called after RUN/model is written, to put files beside it."""


def to_device(batch: dict, device: torch.device, with_speaker: bool) -> dict:
    """Move a batch to `device`; drop speaker ids for a model without speakers."""
    moved = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
    if not with_speaker:
        moved["speaker"] = None
    return moved


def autocast(run: TrainingRun):
    """bf16/fp16 autocast on GPU; CPU training stays in fp32."""
    if run.processes.device.type != "cuda" or run.config.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if run.config.amp == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def set_learning_rate(run: TrainingRun, step: int) -> float:
    """Put the scheduled rate of `step` into the optimizer; returns it."""
    config = run.config
    lr = learning_rate(step, config.lr, config.warmup_steps, config.lr_half_life, config.min_lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """total = sum(weights[k] * losses[k]) over the weighted terms (every one must be present)."""
    return sum(weight * losses[name] for name, weight in weights.items())


def optimizer_update(run: TrainingRun, total: torch.Tensor, step: int) -> dict[str, float]:
    """Backward, clip, Adam step (through the loss scaler), then the EMA update.

    Returns:
        dict: {"grad_norm": global gradient norm before clipping}.
    """
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    run.scaler.unscale_(run.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    update_ema(run.ema, run.model, run.config.ema_decay, step)
    return {"grad_norm": float(grad_norm)}


def save_checkpoint(run: TrainingRun, job: Job, step: int) -> None:
    """Training state to RUN/checkpoint, the EMA model to RUN/model (rank 0 only)."""
    if not run.processes.is_main:
        return
    state = {
        "step": step,
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": capture_rng(),
        "config": run.config.model_dump(mode="json"),
        "best": run.best,
    }
    save_state(run.out / "checkpoint", state)
    _save_ema(run, job, "model", step)


def _save_ema(run: TrainingRun, job: Job, folder: str, step: int, **scores: float) -> None:
    """The EMA model to RUN/`folder`, its extra naming the step, the data and `scores`."""
    extra = {"step": step, "data": str(run.corpus.root), **scores, **job.model_extra(run)}
    job.saved(run, save_model(run.ema, run.out / folder, extra=extra))


def keep_best_model(run: TrainingRun, job: Job, step: int, scores: dict) -> None:
    """Save the EMA model to RUN/best when `scores[config.keep_best]` is the lowest yet.

    `run.best` ({"step", "score"}, kept in the checkpoint) is the evaluation RUN/best holds.

    Raises:
        ConfigError: if the job's held-out scores do not include `config.keep_best`.
    """
    name = run.config.keep_best
    if name not in scores:
        raise ConfigError(
            f"keep_best {name!r} is not a held-out score of this job; it reports "
            f"{sorted(key for key in scores if key.startswith('val_'))}"
        )
    score = float(scores[name])
    if run.best is not None and not score < run.best["score"]:
        return
    run.best = {"step": step, "score": score}
    _save_ema(run, job, "best", step, **{name: score})


def _due(done: int, every: int, last: int) -> bool:
    """Whether a periodic task runs after `done` steps: every `every` steps, and at the end."""
    return done % every == 0 or done == last


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values that were computed; None when none was (a term switched off)."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _summary(run, job, window, speed, items, evaluate) -> dict[str, float | None]:
    """One metrics line: the window's mean losses, the last lr, speed, held-out scores if due."""
    record = {name: _mean([w[name] for w in window]) for name in window[0]}
    record.update(lr=window[-1]["lr"], samples_per_s=speed)
    if evaluate and run.processes.is_main:
        record.update(job.evaluate(run, items))
    return record


def fit(run: TrainingRun, job: Job, log: RunLog, start_step: int) -> None:
    """Train from `start_step` to `config.steps`, logging, evaluating and checkpointing.

    samples_per_s counts the audio samples of every rank's crops per second of data loading
    and training steps; evaluation, sampling and checkpoints are left out of the time.
    With `config.keep_best`, a fresh run scores the untrained model first (a step-0 metrics
    line) and RUN/best follows the lowest score (`keep_best_model`).
    SIGINT or SIGTERM stops the run after the current step, with a checkpoint
    (`training.stopping`).
    """
    config, processes, spec = run.config, run.processes, run.corpus.spec
    loader = make_loader(
        job.crops(run), start_step, config.steps, config.batch_size, config.num_workers
    )
    items = job.validation(run)
    samples_per_step = config.batch_size * spec.samples_for(config.segment_frames)
    samples_per_step *= processes.world_size
    with_speaker = bool(run.model.config.speakers)
    progress = tqdm(
        total=config.steps,
        initial=start_step,
        disable=not processes.is_main,
        desc=job.name,
        unit="step",
        dynamic_ncols=True,
    )
    if config.keep_best and start_step == 0 and processes.is_main:
        scores = job.evaluate(run, items)
        log.scalars(0, scores)
        keep_best_model(run, job, 0, scores)
    window: list[dict] = []
    seconds, last = 0.0, time.perf_counter()
    with stop_requests() as stop:
        for step, batch in enumerate(loader, start=start_step):
            window.append(job.step(run, to_device(batch, processes.device, with_speaker), step))
            seconds += time.perf_counter() - last
            done, speed = step + 1, len(window) * samples_per_step / seconds
            headline = window[-1].get(job.headline)
            shown = "-" if headline is None else f"{headline:.3f}"
            progress.set_postfix({job.headline: shown, "samples_per_s": f"{speed:.0f}"})
            progress.update(1)
            if _due(done, config.log_every, config.steps):
                evaluate = _due(done, config.eval_every, config.steps)
                record = _summary(run, job, window, speed, items, evaluate)
                log.scalars(done, record)
                if evaluate and config.keep_best and processes.is_main:
                    keep_best_model(run, job, done, record)
                window, seconds = [], 0.0
            if processes.is_main and config.sample_every and done % config.sample_every == 0:
                job.sample(run, log, done, items[0])
            saved = _due(done, config.checkpoint_every, config.steps)
            if saved:
                save_checkpoint(run, job, done)
                distributed.barrier(processes)
            signum = distributed.any_rank(processes, stop.signal)
            if signum and done < config.steps:
                if not saved:
                    save_checkpoint(run, job, done)
                    distributed.barrier(processes)
                progress.close()
                if processes.is_main:
                    print(
                        f"{job.name}: stopped by signal {signum} after step {done}; checkpoint "
                        f"saved in {run.out / 'checkpoint'}, --resume continues from it",
                        file=sys.stderr,
                    )
                raise SystemExit(128 + signum)
            last = time.perf_counter()
    progress.close()
