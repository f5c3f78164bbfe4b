"""Probability density distillation (`wavenet distill`): a Parallel WaveNet student from a teacher.

Each step crops segments (audio y, mel c, speaker, utterance), draws z ~ Logistic(0, 1), runs
the student x = g(z | c), and scores x with the switched-on terms of the table
`training.distill_terms.TERMS` (the teacher runs on the student's own sample: once for the
KL, once more on another utterance's conditioning for the contrastive term);
total = sum(weight * term). A run whose teacher terms are all off (a spectral-only student)
needs no teacher. A pitch-aware student or teacher also reads each crop's F0 and
a phase drawn per crop, one phase for both (`training.pitch_inputs`). The teacher and the
classifier are loaded frozen (`eval()`, `requires_grad_(False)`): gradients flow through them
into the student, never into their weights. The run itself (optimizer, EMA,
AMP, DDP, checkpoints, resume, logs) is the shared loop of `training.loop`; RUN/model is the
EMA student.

metrics.jsonl rows carry step, every column of `training.distill_terms.LOGGED_TERMS` (each
term of the table TERMS and the KL's cross_entropy and entropy; null when the term was off for
the whole logging window), total, grad_norm, lr, samples_per_s, and on evaluation steps
val_kl, val_cross_entropy, val_entropy (EMA student; only with a teacher), val_log_mel_l1
and val_periodicity.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training import distributed
from training.dataset import SegmentCrops, Utterance
from training.distill_checks import check_models, needs_classifier
from training.distill_config import active_weights, resolve_distill_config
from training.distill_losses import distill_losses, held_out_kl, noise_for
from training.distill_terms import LOGGED_TERMS
from training.launch import open_run, run_job
from training.loop import (
    Job,
    TrainingRun,
    autocast,
    optimizer_update,
    set_learning_rate,
    weighted_total,
)
from training.monitor import RunLog, read_metrics
from training.pitch_inputs import with_corpus_pitch, with_phases
from training.run_config import config_source
from wavenet.checkpoint import load_model
from wavenet.student import Student

__all__ = [
    "DistillCrops",
    "DistillJob",
    "TeacherWarning",
    "check_models",
    "distill",
    "load_frozen",
    "teacher_nll_warning",
    "train_step",
]


class TeacherWarning(UserWarning):
    """The teacher looks too weak to distil a good student from."""


def teacher_nll_warning(teacher_dir: str | Path, gate: float | None) -> str | None:
    """Why the teacher looks too weak: its run's last val_nll above `gate`, else None.

    The teacher's run is the parent of its checkpoint directory (RUN/model); a teacher with
    no metrics.jsonl there (a copied checkpoint) is not checked.
    """
    if gate is None:
        return None
    run = Path(teacher_dir).resolve().parent
    values = [r["val_nll"] for r in read_metrics(run) if r.get("val_nll") is not None]
    if not values or values[-1] <= gate:
        return None
    return (
        f"the teacher's last held-out NLL, {values[-1]:.3f} bits/sample in "
        f"{run / 'metrics.jsonl'}, is above teacher_nll_gate {gate}: a bad teacher makes a "
        "bad student"
    )


def load_frozen(directory: str | Path, device: torch.device) -> nn.Module:
    """A checkpoint in eval mode with gradients off for its weights."""
    return load_model(directory, device=device).eval().requires_grad_(False)


class DistillCrops(SegmentCrops):
    """Segment crops that also carry their utterance's index in the pool ("utterance", an
    int64 per crop, (B,) in a batch), so that the contrastive term takes c2 from another
    utterance, never from another crop of the same one."""

    def __init__(self, utterances: list[Utterance], *args, **kwargs):
        super().__init__(utterances, *args, **kwargs)
        self.positions = {utterance.entry.id: i for i, utterance in enumerate(utterances)}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray | int]:
        utterance, start = self.draw(*key)
        position = np.int64(self.positions[utterance.entry.id])
        return {**self.item(utterance, start), "utterance": position}


def train_step(run: TrainingRun, job: DistillJob, batch: dict, step: int) -> dict:
    """One optimizer update of the student.

    Returns:
        dict: Every name of LOGGED_TERMS (None for a term not computed), total, grad_norm, lr.
    """
    config, processes = run.config, run.processes
    lr = set_learning_rate(run, step)
    weights = active_weights(config, step)
    shape = tuple(batch["audio"].shape)
    z = noise_for(shape, config.seed, processes.rank, step, processes.device)
    batch = with_phases(batch, config.seed, processes.rank, step)  # the student's and teacher's
    with autocast(run):
        losses = distill_losses(run.module, job.teacher, job.classifier, batch, z, weights, config)
    total = weighted_total(losses, weights)
    stats = optimizer_update(run, total, step)
    named = {
        name: float(losses[name].detach()) if name in losses else None for name in LOGGED_TERMS
    }
    return {**named, "total": float(total.detach()), **stats, "lr": lr}


class DistillJob(Job):
    """Distillation steps; held-out scores of the EMA student; its generated audio.

    Args:
        teacher (nn.Module | None): The frozen teacher; None when no term that is on runs it
            (the held-out scores then leave out the KL).
        classifier (nn.Module | None): The frozen classifier, when the perceptual loss is on.
        teacher_dir (Path | None): Where the teacher came from (recorded in RUN/model).
    """

    name = "distill"
    headline = "total"

    def __init__(
        self, teacher: nn.Module | None, classifier: nn.Module | None, teacher_dir: Path | None
    ):
        self.teacher, self.classifier, self.teacher_dir = teacher, classifier, teacher_dir

    def crops(self, run: TrainingRun) -> DistillCrops:
        config, rank = run.config, run.processes.rank
        return DistillCrops(
            run.corpus.train, run.corpus.spec, config.segment_frames, config.seed, rank
        )

    def step(self, run: TrainingRun, batch: dict, step: int) -> dict:
        return train_step(run, self, batch, step)

    def evaluate(self, run: TrainingRun, items: list[dict]) -> dict[str, float]:
        device, seed = run.processes.device, run.config.seed
        scores = held_out_kl(run.ema, self.teacher, items, device, seed)
        return {f"val_{name}": value for name, value in scores.items()}

    def sample(self, run: TrainingRun, log: RunLog, step: int, item: dict) -> None:
        """Generate a held-out clip in one parallel pass and log it beside the real one."""
        device, frames = run.processes.device, run.config.sample_frames
        mel = item["mel"][..., :frames].to(device)
        speaker = item["speaker"].to(device) if run.model.config.speakers else None
        generator = torch.Generator(device=device).manual_seed(run.config.seed)
        pitch = {}
        if run.model.config.excitation is not None:
            pitch = {"f0": item["f0"][:, :frames].to(device)}
        generated = run.ema.generate(mel, speaker, generator=generator, **pitch)[0].float().cpu()
        log.sample(step, item["audio"][0, : generated.numel()], generated, run.corpus.spec)

    def model_extra(self, run: TrainingRun) -> dict:
        return {"teacher": None if self.teacher_dir is None else str(self.teacher_dir)}


def distill(
    teacher: str | Path | None,
    classifier: str | Path | None,
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Distil a student from `teacher`; alone, or as one rank under torchrun.

    Args:
        teacher (str | Path | None): Teacher checkpoint directory (e.g. a train-teacher
            RUN/model); None is allowed when the config's (on resume, the run's) teacher
            terms, kl and contrastive, are all 0. A teacher given is loaded and checked
            either way, and the held-out KL is logged.
        classifier (str | Path | None): Classifier checkpoint; needed for the perceptual loss.
        data (str | Path): A folder written by `wavenet prepare` (the teacher's features).
        out (str | Path): The run directory.
        config_path (str | Path | None): YAML DistillConfig; on resume, RUN/config.yaml.
        steps (int | None): Total steps, overriding the config.
        resume (bool): Continue from RUN/checkpoint.
        device (torch.device | str): Where to train.

    Returns:
        Path: RUN/model, the EMA student.

    Raises:
        ConfigError: for a bad config, data folder or run directory, a teacher or
            classifier that does not fit the student, or a missing one that a term that is
            on needs (see `check_models`).
        PitchSpecError: for a pitch-aware student or teacher and a corpus without F0, or
            F0 tracked otherwise than the config's (or the resumed run's) model.pitch or
            the teacher's.
    """
    resolve = resolve_distill_config
    out, corpus, config = open_run(data, out, config_path, steps, resume, resolve)
    config = with_corpus_pitch(config, corpus, config_source(config_path, out, resume))
    check_models(config, corpus, teacher, classifier)

    def make_job(processes: distributed.Processes) -> DistillJob:
        wanted = needs_classifier(config)
        frozen_classifier = load_frozen(classifier, processes.device) if wanted else None
        if teacher is None:
            return DistillJob(None, frozen_classifier, None)
        message = teacher_nll_warning(teacher, config.teacher_nll_gate)
        if message and processes.is_main:
            warnings.warn(message, TeacherWarning, stacklevel=2)
        return DistillJob(load_frozen(teacher, processes.device), frozen_classifier, Path(teacher))

    def build_model() -> Student:
        return Student(config.model, corpus.spec)

    return run_job(config, corpus, out, resume, torch.device(device), build_model, make_job)
