"""Teacher training (`wavenet train-teacher`): maximum likelihood on random segment crops.

The loss is the cross-entropy of the teacher's 256-way logits against the mu-law classes of
the audio, reported in bits per sample. Adam with warm-up and exponential decay, gradient
clipping, and an exponential moving average (EMA) of the weights; the EMA model is the one
evaluated on held-out audio and saved to RUN/model. RUN/checkpoint holds everything needed to
resume: weights, EMA, optimizer, loss scaler, step and RNG states.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from training import distributed
from training.config import ConfigError
from training.dataset import (
    PreparedCorpus,
    SegmentCrops,
    load_prepared,
    make_loader,
    validation_items,
)
from training.metrics import nll_bits
from training.monitor import RunLog
from training.optim import ema_copy, learning_rate, update_ema
from training.sampling import vocode
from training.state import capture_rng, has_state, load_state, restore_rng, save_state
from training.teacher_config import CONFIG_FILE, TeacherTrainConfig, resolve_config, save_config
from wavenet import mulaw
from wavenet.checkpoint import save_model
from wavenet.teacher import Teacher

__all__ = [
    "LOSS_WEIGHTS",
    "TrainingRun",
    "held_out_nll",
    "teacher_losses",
    "train_step",
    "train_teacher",
]

LOSS_WEIGHTS = {"nll": 1.0}


@dataclass
class TrainingRun:
    """The objects one training process works with."""

    config: TeacherTrainConfig
    corpus: PreparedCorpus
    processes: distributed.Processes
    out: Path
    model: Teacher
    module: nn.Module  # `model`, or its DDP wrapper: the one called in training steps
    ema: Teacher
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def to_device(batch: dict, device: torch.device, with_speaker: bool) -> dict:
    """Move a batch to `device`; drop speaker ids for a model without speakers."""
    moved = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
    if not with_speaker:
        moved["speaker"] = None
    return moved


def teacher_losses(model: nn.Module, batch: dict, quantize_input: bool) -> dict[str, torch.Tensor]:
    """Named losses of one batch.

    Args:
        model (nn.Module): A `Teacher` (or its DDP wrapper).
        batch (dict): audio (B, T) in [-1, 1], mel (B, n_mels, T / hop), speaker (B,) or None.
        quantize_input (bool): Feed the quantised audio (as generation does) rather than the
            continuous waveform.

    Returns:
        dict: {"nll": mean negative log-likelihood in bits per sample (scalar)}.
    """
    classes = mulaw.encode(batch["audio"])
    inputs = mulaw.decode(classes) if quantize_input else batch["audio"]
    logits = model(inputs, batch["mel"], batch["speaker"])
    return {"nll": nll_bits(logits, classes)}


def _autocast(run: TrainingRun):
    """bf16/fp16 autocast on GPU; CPU training stays in fp32."""
    if run.processes.device.type != "cuda" or run.config.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if run.config.amp == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def train_step(run: TrainingRun, batch: dict, step: int) -> dict[str, float]:
    """One optimizer update, then the EMA update.

    Returns:
        dict: The named losses (bits per sample), plus `grad_norm` (before clipping) and `lr`.
    """
    config = run.config
    lr = learning_rate(step, config.lr, config.warmup_steps, config.lr_half_life, config.min_lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with _autocast(run):
        losses = teacher_losses(run.module, batch, config.quantize_input)
    total = sum(LOSS_WEIGHTS[name] * value for name, value in losses.items())
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(total).backward()
    run.scaler.unscale_(run.optimizer)
    grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    update_ema(run.ema, run.model, config.ema_decay, step)
    named = {name: float(value.detach()) for name, value in losses.items()}
    return {**named, "grad_norm": float(grad_norm), "lr": lr}


@torch.no_grad()
def held_out_nll(
    model: Teacher, items: list[dict], device: torch.device, quantize_input: bool
) -> float:
    """NLL in bits per sample over held-out items, weighted by their lengths (teacher forced)."""
    bits, samples = 0.0, 0
    for item in items:
        batch = to_device(item, device, with_speaker=bool(model.config.speakers))
        nll = teacher_losses(model, batch, quantize_input)["nll"]
        bits += float(nll) * batch["audio"].numel()
        samples += batch["audio"].numel()
    return bits / max(samples, 1)


def build_run(
    config: TeacherTrainConfig, corpus: PreparedCorpus, processes: distributed.Processes, out: Path
) -> TrainingRun:
    """Model, EMA, optimizer and loss scaler, freshly initialised from `config.seed`."""
    torch.manual_seed(config.seed)
    model = Teacher(config.model, corpus.spec).to(processes.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.adam_betas)
    fp16 = processes.device.type == "cuda" and config.amp == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    return TrainingRun(
        config,
        corpus,
        processes,
        out,
        model,
        distributed.wrap(model, processes),
        ema_copy(model),
        optimizer,
        scaler,
    )


def save_checkpoint(run: TrainingRun, step: int) -> None:
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
    }
    save_state(run.out / "checkpoint", state)
    save_model(run.ema, run.out / "model", extra={"step": step, "data": str(run.corpus.root)})


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
    return int(state["step"])


def log_sample(run: TrainingRun, log: RunLog, step: int, item: dict) -> None:
    """Generate a short held-out clip with the EMA model and log it beside the real one."""
    mel = item["mel"][0, :, : run.config.sample_frames]
    speaker = int(item["speaker"][0]) if run.config.model.speakers else None
    generated = vocode(run.ema, [mel], [speaker], seed=run.config.seed)[0]
    real = item["audio"][0, : len(generated)]
    log.sample(step, real, torch.from_numpy(generated), run.corpus.spec)


def _due(done: int, every: int, last: int) -> bool:
    """Whether a periodic task runs after `done` steps: every `every` steps, and at the end."""
    return done % every == 0 or done == last


def _summary(
    run: TrainingRun, window: list[dict], speed: float, val_items: list, evaluate: bool
) -> dict[str, float]:
    """One metrics line: the window's mean losses, the last lr, speed, and val NLL if due."""
    record = {name: sum(w[name] for w in window) / len(window) for name in window[0]}
    record.update(lr=window[-1]["lr"], samples_per_s=speed)
    if evaluate and run.processes.is_main:
        device, quantize = run.processes.device, run.config.quantize_input
        record["val_nll"] = held_out_nll(run.ema, val_items, device, quantize)
    return record


def fit(run: TrainingRun, log: RunLog, start_step: int) -> None:
    """Train from `start_step` to `config.steps`, logging, evaluating and checkpointing.

    samples_per_s counts the audio samples of every rank's crops per second of data loading
    and training steps; evaluation, sampling and checkpoints are left out of the time.
    """
    config, processes, spec = run.config, run.processes, run.corpus.spec
    crops = SegmentCrops(run.corpus.train, spec, config.segment_frames, config.seed, processes.rank)
    loader = make_loader(crops, start_step, config.steps, config.batch_size, config.num_workers)
    val_items = validation_items(run.corpus, config.val_utterances, config.val_frames)
    samples_per_step = config.batch_size * spec.samples_for(config.segment_frames)
    samples_per_step *= processes.world_size
    progress = tqdm(
        total=config.steps,
        initial=start_step,
        disable=not processes.is_main,
        desc="train-teacher",
        unit="step",
        dynamic_ncols=True,
    )
    window: list[dict[str, float]] = []
    seconds, last = 0.0, time.perf_counter()
    for step, batch in enumerate(loader, start=start_step):
        batch = to_device(batch, processes.device, with_speaker=bool(config.model.speakers))
        window.append(train_step(run, batch, step))
        seconds += time.perf_counter() - last
        done, speed = step + 1, len(window) * samples_per_step / seconds
        progress.set_postfix(nll=f"{window[-1]['nll']:.3f}", samples_per_s=f"{speed:.0f}")
        progress.update(1)
        if _due(done, config.log_every, config.steps):
            evaluate = _due(done, config.eval_every, config.steps)
            log.scalars(done, _summary(run, window, speed, val_items, evaluate))
            window, seconds = [], 0.0
        if processes.is_main and config.sample_every and done % config.sample_every == 0:
            log_sample(run, log, done, val_items[0])
        if _due(done, config.checkpoint_every, config.steps):
            save_checkpoint(run, done)
            distributed.barrier(processes)
        last = time.perf_counter()
    progress.close()


def train_teacher(
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Train a teacher on a prepared corpus; alone, or as one rank under torchrun.

    Args:
        data (str | Path): A folder written by `wavenet prepare`.
        out (str | Path): The run directory (config.yaml, metrics.jsonl, tensorboard/,
            checkpoint/, model/).
        config_path (str | Path | None): YAML config; on resume, RUN/config.yaml by default.
        steps (int | None): Total steps, overriding the config.
        resume (bool): Continue from RUN/checkpoint.
        device (torch.device | str): Where to train (each DDP rank takes its local GPU).

    Returns:
        Path: RUN/model, the EMA teacher.

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
    if config_path is None and resume and (out / CONFIG_FILE).is_file():
        config_path = out / CONFIG_FILE
    config = resolve_config(config_path, corpus.speakers, steps)
    processes = distributed.setup(torch.device(device))
    try:
        if processes.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / CONFIG_FILE)
        run = build_run(config, corpus, processes, out)
        start_step = restore_checkpoint(run) if resume else 0
        log = RunLog(out, start_step, processes.is_main)
        try:
            fit(run, log, start_step)
        finally:
            log.close()
    finally:
        distributed.teardown(processes)
    return out / "model"
