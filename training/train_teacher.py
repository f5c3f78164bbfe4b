"""Teacher training (`wavenet train-teacher`): maximum likelihood on random segment crops.

The loss is the cross-entropy of the teacher's 256-way logits against the mu-law classes of
the audio, reported in bits per sample. A pitch-aware teacher (`model.excitation`) also reads
each crop's F0 and a phase drawn per crop (`training.pitch_inputs`). The run itself (Adam
with warm-up and decay, clipping, EMA, DDP, checkpoints, resume, logs) is the shared loop of
`training.loop`; the EMA model is the one evaluated on held-out audio and saved to RUN/model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from training import distributed
from training.dataset import PreparedCorpus
from training.launch import new_run, open_run, run_job
from training.loop import (
    Job,
    TrainingRun,
    autocast,
    optimizer_update,
    set_learning_rate,
    to_device,
    weighted_total,
)
from training.metrics import nll_bits
from training.monitor import RunLog
from training.pitch_inputs import pitch_inputs, with_corpus_pitch, with_phases
from training.run_config import config_source
from training.sampling import single_threaded, vocode
from training.teacher_config import TeacherTrainConfig, resolve_config
from wavenet import mulaw
from wavenet.teacher import Teacher

__all__ = [
    "LOSS_WEIGHTS",
    "TeacherJob",
    "TrainingRun",
    "build_run",
    "held_out_nll",
    "teacher_losses",
    "to_device",
    "train_step",
    "train_teacher",
]

LOSS_WEIGHTS = {"nll": 1.0}


def teacher_losses(
    model: nn.Module, batch: dict, quantize_input: bool, pitch: dict | None = None
) -> dict[str, torch.Tensor]:
    """Named losses of one batch.

    Args:
        model (nn.Module): A `Teacher` (or its DDP wrapper).
        batch (dict): audio (B, T) in [-1, 1], mel (B, n_mels, T / hop), speaker (B,) or None.
        quantize_input (bool): Feed the quantised audio (as generation does) rather than the
            continuous waveform.
        pitch (dict | None): A pitch-aware teacher's f0 (B, T / hop) and phase (B,)
            (`training.pitch_inputs.pitch_inputs`); None or {} for a mel-only one.

    Returns:
        dict: {"nll": mean negative log-likelihood in bits per sample (scalar)}.
    """
    classes = mulaw.encode(batch["audio"])
    inputs = mulaw.decode(classes) if quantize_input else batch["audio"]
    logits = model(inputs, batch["mel"], batch["speaker"], **(pitch or {}))
    return {"nll": nll_bits(logits, classes)}


def train_step(run: TrainingRun, batch: dict, step: int) -> dict[str, float]:
    """One optimizer update, then the EMA update.

    Returns:
        dict: The named losses (bits per sample), plus `grad_norm` (before clipping) and `lr`.
    """
    lr = set_learning_rate(run, step)
    batch = with_phases(batch, run.config.seed, run.processes.rank, step)
    pitch = pitch_inputs(run.model.config, batch)
    with autocast(run):
        losses = teacher_losses(run.module, batch, run.config.quantize_input, pitch)
    stats = optimizer_update(run, weighted_total(losses, LOSS_WEIGHTS), step)
    named = {name: float(value.detach()) for name, value in losses.items()}
    return {**named, **stats, "lr": lr}


@torch.no_grad()
def held_out_nll(
    model: Teacher, items: list[dict], device: torch.device, quantize_input: bool
) -> float:
    """NLL in bits per sample over held-out items, weighted by their lengths (teacher forced;
    a pitch-aware teacher's excitation from phase 0)."""
    bits, samples = 0.0, 0
    for item in items:
        batch = to_device(item, device, with_speaker=bool(model.config.speakers))
        pitch = pitch_inputs(model.config, batch)
        nll = teacher_losses(model, batch, quantize_input, pitch)["nll"]
        bits += float(nll) * batch["audio"].numel()
        samples += batch["audio"].numel()
    return bits / max(samples, 1)


def build_run(
    config: TeacherTrainConfig, corpus: PreparedCorpus, processes: distributed.Processes, out: Path
) -> TrainingRun:
    """Model, EMA, optimizer and loss scaler, freshly initialised from `config.seed`."""
    torch.manual_seed(config.seed)
    model = Teacher(config.model, corpus.spec).to(processes.device).train()
    return new_run(config, corpus, processes, out, model)


class TeacherJob(Job):
    """Maximum likelihood; held-out NLL; autoregressive samples of a short held-out clip."""

    name = "train-teacher"
    headline = "nll"

    def step(self, run: TrainingRun, batch: dict, step: int) -> dict[str, float]:
        return train_step(run, batch, step)

    def evaluate(self, run: TrainingRun, items: list[dict]) -> dict[str, float]:
        device, quantize = run.processes.device, run.config.quantize_input
        return {"val_nll": held_out_nll(run.ema, items, device, quantize)}

    def sample(self, run: TrainingRun, log: RunLog, step: int, item: dict) -> None:
        """Generate a short held-out clip with the EMA model and log it beside the real one."""
        frames = run.config.sample_frames
        mel = item["mel"][0, :, :frames]
        speaker = int(item["speaker"][0]) if run.config.model.speakers else None
        if run.config.model.excitation is None:
            generated = vocode(run.ema, [mel], [speaker], seed=run.config.seed)[0]
        else:
            generated = _vocode_pitched(run, item, frames)
        real = item["audio"][0, : len(generated)]
        log.sample(step, real, torch.from_numpy(generated), run.corpus.spec)


@torch.no_grad()
def _vocode_pitched(run: TrainingRun, item: dict, frames: int) -> np.ndarray:
    """A pitch-aware teacher's clip of a held-out item's first frames, with its F0."""
    device = run.processes.device
    speaker = item["speaker"].to(device) if run.config.model.speakers else None
    generator = torch.Generator(device).manual_seed(run.config.seed)
    with single_threaded(device):
        audio = run.ema.generate(
            item["mel"][..., :frames].to(device),
            speaker,
            f0=item["f0"][:, :frames].to(device),
            generator=generator,
        )
    return audio[0].float().cpu().numpy()


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
        PitchSpecError: for a pitch-aware model and a corpus without F0, or F0 tracked with
            other settings than the config's (or the resumed run's) model.pitch.
    """
    out, corpus, config = open_run(data, out, config_path, steps, resume, resolve_config)
    config = with_corpus_pitch(config, corpus, config_source(config_path, out, resume))
    return run_job(
        config,
        corpus,
        out,
        resume,
        torch.device(device),
        lambda: Teacher(config.model, corpus.spec),
        lambda processes: TeacherJob(),
    )
