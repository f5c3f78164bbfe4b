"""Pitch-predictor training (`wavenet train-pitch`): log-mel -> voicing and log-F0 per frame.

The labels are the F0 the prepared corpus's pitch tracker cached beside each mel (0 =
unvoiced), so the model learns that tracker, with its settings (`PitchSpec`) checked
against the corpus's and saved in the model. The loss is total = sum(weight * term) over
the voicing cross-entropy and the log-F0 L1 in voiced frames; held-out scores are the
voicing error, the gross pitch error and the median error in cents on the "val" split
(seen speakers). The run itself (optimizer, EMA, DDP, checkpoints, resume, logs) is the
shared loop of `training.loop`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from training import distributed
from training.config import load_config
from training.dataset import PreparedCorpus
from training.launch import open_run, run_job
from training.loop import (
    Job,
    TrainingRun,
    autocast,
    optimizer_update,
    set_learning_rate,
    weighted_total,
)
from training.pitch_config import PitchTrainConfig, with_corpus_pitch
from training.pitch_metrics import pitch_scores
from training.run_config import config_source
from wavenet.pitch_model import PitchPredictor, log_f0_l1, voicing_bce

__all__ = ["PitchJob", "held_out_pitch", "pitch_losses", "resolve_run", "train_pitch"]


def pitch_losses(model: nn.Module, mel: torch.Tensor, f0: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named losses of one batch.

    Args:
        model (nn.Module): A `PitchPredictor` (or its DDP wrapper).
        mel (Tensor): Log-mel (B, n_mels, F).
        f0 (Tensor): Tracked F0 in Hz (B, F), 0 = unvoiced.

    Returns:
        dict: {"voicing_bce" (nats per frame), "log_f0_l1" (ln units per voiced frame)}.
    """
    voicing, log_f0 = model(mel)
    return {"voicing_bce": voicing_bce(voicing, f0), "log_f0_l1": log_f0_l1(log_f0, f0)}


@torch.no_grad()
def held_out_pitch(model: PitchPredictor, items: list[dict], device: torch.device) -> dict:
    """Losses (frame-weighted means) and pitch scores over all frames of the held-out items."""
    references, estimates, bce, l1, frames, voiced = [], [], 0.0, 0.0, 0, 0
    for item in items:
        mel, f0 = item["mel"].to(device), item["f0"].to(device)
        losses = pitch_losses(model, mel, f0)
        count, count_voiced = f0.numel(), int((f0 > 0).sum())
        bce += float(losses["voicing_bce"]) * count
        l1 += float(losses["log_f0_l1"]) * count_voiced
        frames, voiced = frames + count, voiced + count_voiced
        references.append(f0.flatten().cpu().numpy())
        estimates.append(model.predict_f0(mel).flatten().cpu().numpy())
    scores = pitch_scores(np.concatenate(references), np.concatenate(estimates))
    return {
        "val_voicing_bce": bce / max(frames, 1),
        "val_log_f0_l1": l1 / max(voiced, 1),
        "val_voicing_error": scores["voicing_error"],
        "val_gross_pitch_error": scores["gross_pitch_error"],
        "val_median_cents": scores["median_cents"],
    }


class PitchJob(Job):
    """Voicing cross-entropy and log-F0 L1; held-out voicing error, GPE and median cents."""

    name = "train-pitch"
    headline = "log_f0_l1"

    def step(self, run: TrainingRun, batch: dict, step: int) -> dict[str, float | None]:
        """One optimizer update; named losses, grad_norm and lr."""
        lr = set_learning_rate(run, step)
        with autocast(run):
            losses = pitch_losses(run.module, batch["mel"], batch["f0"])
        weights = run.config.loss_weights.model_dump()
        stats = optimizer_update(run, weighted_total(losses, weights), step)
        named = {name: float(value.detach()) for name, value in losses.items()}
        return {**named, **stats, "lr": lr}

    def evaluate(self, run: TrainingRun, items: list[dict]) -> dict[str, float]:
        return held_out_pitch(run.ema, items, run.processes.device)


def _load(path: str | Path | None, speakers: list[str], steps: int | None) -> PitchTrainConfig:
    return load_config(path, PitchTrainConfig, steps=steps)


def resolve_run(
    data: str | Path, out: str | Path, config_path, steps: int | None, resume: bool
) -> tuple[Path, PreparedCorpus, PitchTrainConfig]:
    """The run directory, the corpus and the config with the corpus's PitchSpec, checked."""
    out, corpus, config = open_run(data, out, config_path, steps, resume, _load)
    source = config_source(config_path, out, resume)
    return out, corpus, with_corpus_pitch(config, corpus.pitch, source, corpus.root)


def train_pitch(
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Train the pitch predictor on a prepared corpus's cached F0; alone, or under torchrun.

    Args:
        data (str | Path): A folder written by `wavenet prepare`, with F0.
        out (str | Path): The run directory (config.yaml, metrics.jsonl, tensorboard/,
            checkpoint/, model/).
        config_path (str | Path | None): YAML config; on resume, RUN/config.yaml by default.
        steps (int | None): Total steps, overriding the config.
        resume (bool): Continue from RUN/checkpoint.
        device (torch.device | str): Where to train.

    Returns:
        Path: RUN/model, the EMA pitch predictor.

    Raises:
        ConfigError: for a bad config, a corpus without F0, or a model.pitch that differs
            from the corpus's PitchSpec.
    """
    out, corpus, config = resolve_run(data, out, config_path, steps, resume)

    def make_job(processes: distributed.Processes) -> PitchJob:
        return PitchJob()

    def build_model() -> PitchPredictor:
        return PitchPredictor(config.model, corpus.spec)

    return run_job(config, corpus, out, resume, torch.device(device), build_model, make_job)
