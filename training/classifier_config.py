"""The configuration of a classifier training run: YAML keys map onto `ClassifierTrainConfig`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from training.run_config import RunConfig, resolve_run_config
from training.units import unit_names
from wavenet.classifier import ClassifierConfig

__all__ = ["ClassifierLossWeights", "ClassifierTrainConfig", "resolve_classifier_config"]


class ClassifierLossWeights(BaseModel):
    """Weight of each term of the classifier's loss; 0 switches a term off."""

    model_config = ConfigDict(extra="forbid")

    unit_ce: float = Field(1.0, ge=0, description="Frame-level cross-entropy of the units.")
    speaker_ce: float = Field(1.0, ge=0, description="Utterance-level speaker cross-entropy.")


class ClassifierTrainConfig(RunConfig):
    """Everything a classifier run needs besides its data. Sizes are per process."""

    model: ClassifierConfig = Field(
        default_factory=ClassifierConfig,
        description="Architecture; units come from n_units, speakers from the corpus.",
    )
    n_units: int = Field(
        64, ge=2, description="Pseudo-phone units: k-means clusters of the train MFCC frames."
    )
    unit_frames: int = Field(
        200_000, gt=0, description="Frames clustered at most (a seeded random subset beyond)."
    )
    loss_weights: ClassifierLossWeights = Field(
        default_factory=ClassifierLossWeights, description="total = sum(weight * term)."
    )
    steps: int = Field(20_000, gt=0, description="Optimizer updates in the whole run.")
    ema_decay: float = Field(
        0.999, ge=0, lt=1, description="EMA of the weights; the EMA model is the one saved."
    )
    sample_every: int = Field(0, ge=0, description="Unused: a classifier makes no audio.")


def resolve_classifier_config(
    path: str | Path | None, speakers: list[str], steps: int | None = None
) -> ClassifierTrainConfig:
    """Load a classifier run config; its model gets unit0..unit{n-1} and the corpus's speakers.

    Raises:
        ConfigError: for unknown keys or bad values (naming them), or model.speakers or
            model.units written in the file that differ from the derived ones.
    """
    return resolve_run_config(
        path,
        ClassifierTrainConfig,
        speakers,
        steps,
        derive=lambda config: {"units": unit_names(config.n_units)},
    )
