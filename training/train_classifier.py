"""Classifier training (`wavenet train-classifier`): the speech classifier of the perceptual loss.

Targets are, per mel frame, a pseudo-phone unit (k-means over the MFCC frames of the train
split, fitted once per run and saved as RUN/units.npz, copied into RUN/model), and per crop,
the speaker. The loss is total = sum(weight * term) over the frame-level unit cross-entropy
and the utterance-level speaker cross-entropy. The run itself (optimizer, EMA, DDP,
checkpoints, resume, logs) is the shared loop of `training.loop`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import distributed
from training.classifier_config import ClassifierTrainConfig, resolve_classifier_config
from training.config import ConfigError
from training.dataset import PreparedCorpus, SegmentCrops, Utterance, validation_utterances
from training.launch import open_run, run_job
from training.loop import (
    Job,
    TrainingRun,
    autocast,
    optimizer_update,
    set_learning_rate,
    to_device,
    weighted_total,
)
from training.units import UnitModel, fit_units, load_units, save_units
from wavenet.checkpoint import atomic_write_bytes
from wavenet.classifier import Classifier

__all__ = [
    "IGNORE",
    "UNITS_FILE",
    "ClassifierJob",
    "UnitCrops",
    "classifier_losses",
    "held_out_accuracy",
    "train_classifier",
]

UNITS_FILE = "units.npz"
IGNORE = -100  # label of frames past an utterance's end (padding): no loss, not scored


def _mel(utterance: Utterance, spec) -> torch.Tensor:
    return torch.from_numpy(np.array(utterance.load(spec)[1]))


def prepare_units(
    out: Path, corpus: PreparedCorpus, config: ClassifierTrainConfig, processes, refit: bool
) -> UnitModel:
    """Rank 0 fits the units on the train split (or keeps RUN/units.npz when resuming);
    every rank then reads the same file."""
    path = out / UNITS_FILE
    if processes.is_main and (refit or not path.is_file()):
        mels = [_mel(utterance, corpus.spec) for utterance in corpus.train]
        try:
            units = fit_units(mels, config.n_units, config.seed, config.unit_frames)
        except ValueError as error:
            raise ConfigError(f"n_units {config.n_units}: {error}") from None
        save_units(units, path)
    distributed.barrier(processes)
    return load_units(path)


class UnitCrops(SegmentCrops):
    """Segment crops with the unit of every frame (B, F); IGNORE past the utterance's end.

    Args:
        labels (dict): Unit ids (frames,) of every utterance, by utterance id.
        *args: Those of `SegmentCrops`.
    """

    def __init__(self, labels: dict[str, np.ndarray], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = labels

    def item(self, utterance: Utterance, start: int) -> dict:
        item = super().item(utterance, start)
        units = np.full(self.segment_frames, IGNORE, dtype=np.int64)
        found = self.labels[utterance.entry.id][start : start + self.segment_frames]
        units[: len(found)] = found
        return {**item, "units": units}


def classifier_losses(
    model: nn.Module, batch: dict
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Named losses and training accuracies of one batch.

    Args:
        model (nn.Module): A `Classifier` (or its DDP wrapper).
        batch (dict): audio (B, T), units (B, F) with IGNORE for padding, speaker (B,).

    Returns:
        tuple: {"unit_ce", "speaker_ce" (speaker models only)} in nats (scalars), and
        {"unit_accuracy", "speaker_accuracy"} of the batch.
    """
    unit_logits, speaker_logits = model(batch["audio"])
    units = batch["units"]
    losses = {"unit_ce": F.cross_entropy(unit_logits.float(), units, ignore_index=IGNORE)}
    scored = units != IGNORE
    hits = (unit_logits.argmax(dim=1) == units)[scored].float()
    accuracy = {"unit_accuracy": float(hits.mean()) if hits.numel() else None}
    if speaker_logits is not None:
        losses["speaker_ce"] = F.cross_entropy(speaker_logits.float(), batch["speaker"])
        right = speaker_logits.argmax(dim=1) == batch["speaker"]
        accuracy["speaker_accuracy"] = float(right.float().mean())
    return losses, accuracy


def train_step(run: TrainingRun, batch: dict, step: int) -> dict[str, float | None]:
    """One optimizer update; named losses, accuracies, grad_norm and lr."""
    lr = set_learning_rate(run, step)
    with autocast(run):
        losses, accuracy = classifier_losses(run.module, batch)
    weights = {n: w for n, w in run.config.loss_weights.model_dump().items() if n in losses}
    stats = optimizer_update(run, weighted_total(losses, weights), step)
    named = {name: float(value.detach()) for name, value in losses.items()}
    return {**named, **accuracy, **stats, "lr": lr}


@torch.no_grad()
def held_out_accuracy(model: Classifier, items: list[dict], device: torch.device) -> dict:
    """Frame-level unit cross-entropy and accuracy over all held-out frames, and speaker
    accuracy per item."""
    unit_nats = unit_hits = frames = speaker_hits = 0.0
    for item in items:
        batch = to_device(item, device, with_speaker=True)
        unit_logits, speaker_logits = model(batch["audio"])
        units = batch["units"]
        scored = units != IGNORE
        unit_nats += float(
            F.cross_entropy(unit_logits, units, ignore_index=IGNORE, reduction="sum")
        )
        unit_hits += int((unit_logits.argmax(dim=1) == units)[scored].sum())
        frames += int(scored.sum())
        if speaker_logits is not None:
            speaker_hits += int((speaker_logits.argmax(dim=1) == batch["speaker"]).sum())
    frames = max(frames, 1)
    scores = {"val_unit_ce": unit_nats / frames, "val_unit_accuracy": unit_hits / frames}
    if model.speaker_head is not None:
        scores["val_speaker_accuracy"] = speaker_hits / max(len(items), 1)
    return scores


class ClassifierJob(Job):
    """Unit and speaker cross-entropy; held-out unit and speaker accuracy.

    Every metrics line with held-out scores also carries `val_unit_baseline`, the accuracy
    of always answering the train split's most frequent unit: chance, for this corpus.
    """

    name = "train-classifier"
    headline = "unit_ce"

    def __init__(self, units: UnitModel, corpus: PreparedCorpus):
        utterances = corpus.train + corpus.val
        self.labels = {u.entry.id: units.assign(_mel(u, corpus.spec)).numpy() for u in utterances}
        counts = Counter(int(u) for t in corpus.train for u in self.labels[t.entry.id])
        self.most_frequent = counts.most_common(1)[0][0]

    def crops(self, run: TrainingRun) -> UnitCrops:
        config, corpus, rank = run.config, run.corpus, run.processes.rank
        frames = config.segment_frames
        return UnitCrops(self.labels, corpus.train, corpus.spec, frames, config.seed, rank)

    def validation(self, run: TrainingRun) -> list[dict]:
        items = super().validation(run)
        utterances = validation_utterances(run.corpus, run.config.val_utterances)
        for item, utterance in zip(items, utterances, strict=True):
            frames = item["mel"].shape[-1]
            item["units"] = torch.from_numpy(self.labels[utterance.entry.id][:frames])[None]
        return items

    def step(self, run: TrainingRun, batch: dict, step: int) -> dict[str, float | None]:
        return train_step(run, batch, step)

    def evaluate(self, run: TrainingRun, items: list[dict]) -> dict[str, float]:
        units = torch.cat([item["units"].flatten() for item in items])
        baseline = float((units == self.most_frequent).float().mean())
        scores = held_out_accuracy(run.ema, items, run.processes.device)
        return {**scores, "val_unit_baseline": baseline}

    def model_extra(self, run: TrainingRun) -> dict:
        return {"units_file": UNITS_FILE, "n_units": run.config.n_units}

    def saved(self, run: TrainingRun, model_dir: Path) -> None:
        atomic_write_bytes(model_dir / UNITS_FILE, (run.out / UNITS_FILE).read_bytes())


def train_classifier(
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    steps: int | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> Path:
    """Fit pseudo-phone units and train the classifier; alone, or as one rank under torchrun.

    Args:
        data (str | Path): A folder written by `wavenet prepare`.
        out (str | Path): The run directory (config.yaml, units.npz, metrics.jsonl,
            tensorboard/, checkpoint/, model/).
        config_path (str | Path | None): YAML config; on resume, RUN/config.yaml by default.
        steps (int | None): Total steps, overriding the config.
        resume (bool): Continue from RUN/checkpoint (and its units.npz).
        device (torch.device | str): Where to train.

    Returns:
        Path: RUN/model, the EMA classifier (with units.npz beside its weights).
    """
    resolve = resolve_classifier_config
    out, corpus, config = open_run(data, out, config_path, steps, resume, resolve)

    def make_job(processes: distributed.Processes) -> ClassifierJob:
        return ClassifierJob(prepare_units(out, corpus, config, processes, not resume), corpus)

    def build_model() -> Classifier:
        return Classifier(config.model, corpus.spec)

    return run_job(config, corpus, out, resume, torch.device(device), build_model, make_job)
