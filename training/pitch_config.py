"""The configuration of a pitch-predictor training run: YAML keys map onto `PitchTrainConfig`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from training.config import load_config
from training.run_config import RunConfig
from wavenet.pitch import PitchSpec, check_pitch_spec
from wavenet.pitch_model import PitchPredictorConfig

__all__ = ["PitchLossWeights", "PitchTrainConfig", "resolve_pitch_config", "with_corpus_pitch"]


class PitchLossWeights(BaseModel):
    """Weight of each term of the pitch predictor's loss; 0 switches a term off."""

    model_config = ConfigDict(extra="forbid")

    voicing_bce: float = Field(1.0, ge=0, description="Voiced/unvoiced cross-entropy per frame.")
    log_f0_l1: float = Field(
        1.0, ge=0, description="|ln F0 error| over the tracker's voiced frames."
    )


class PitchTrainConfig(RunConfig):
    """Everything a pitch-predictor run needs besides its data. Sizes are per process."""

    model: PitchPredictorConfig = Field(
        default_factory=PitchPredictorConfig,
        description="Architecture; model.pitch comes from the prepared corpus.",
    )
    loss_weights: PitchLossWeights = Field(
        default_factory=PitchLossWeights, description="total = sum(weight * term)."
    )
    steps: int = Field(5000, gt=0, description="Optimizer updates in the whole run.")
    segment_frames: int = Field(
        128, gt=0, description="Frames per crop: about 2 s at hop 256, many receptive fields."
    )
    ema_decay: float = Field(
        0.999, ge=0, lt=1, description="EMA of the weights; the EMA model is the one saved."
    )
    sample_every: int = Field(0, ge=0, description="Unused: a pitch predictor makes no audio.")


def resolve_pitch_config(
    path: str | Path | None,
    pitch: PitchSpec | None,
    data: str | Path,
    steps: int | None = None,
) -> PitchTrainConfig:
    """Load a pitch run config and give its model the prepared corpus's PitchSpec.

    Args:
        path (str | Path | None): YAML file; None for the defaults.
        pitch (PitchSpec | None): The corpus's tracker settings; None for a corpus prepared
            without F0.
        data (str | Path): The prepared corpus, named in errors.
        steps (int | None): Overrides `steps` when given.

    Raises:
        ConfigError: for unknown keys or bad values, naming them.
        PitchSpecError: as `with_corpus_pitch`.
    """
    return with_corpus_pitch(load_config(path, PitchTrainConfig, steps=steps), pitch, path, data)


def with_corpus_pitch(
    config: PitchTrainConfig, pitch: PitchSpec | None, path: str | Path | None, data: str | Path
) -> PitchTrainConfig:
    """`config` with model.pitch set to the corpus's PitchSpec.

    Args:
        config (PitchTrainConfig): As loaded from `path`.
        pitch (PitchSpec | None): The corpus's; None for a corpus prepared without F0.
        path (str | Path | None): Where `config` came from, named in errors.
        data (str | Path): The prepared corpus, named in errors.

    Raises:
        PitchSpecError: for a corpus without F0, or a model.pitch written in the file (or
            saved by the run being resumed) that differs from the corpus's, naming each
            setting: labels tracked with other settings would be another task.
    """
    if pitch is None or "pitch" in config.model.model_fields_set:
        check_pitch_spec(
            config.model.pitch, pitch, f"{path or 'the config'} (model.pitch)", str(data)
        )
    fields = {**config.model.model_dump(), "pitch": pitch.model_dump()}
    return config.model_copy(update={"model": PitchPredictorConfig.model_validate(fields)})
