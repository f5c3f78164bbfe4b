"""The configuration of a teacher training run: YAML keys map onto `TeacherTrainConfig`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from training.run_config import CONFIG_FILE, RunConfig, resolve_run_config, save_config
from wavenet.teacher import TeacherConfig

__all__ = ["CONFIG_FILE", "TeacherTrainConfig", "resolve_config", "save_config"]


class TeacherTrainConfig(RunConfig):
    """Everything a teacher run needs besides its data. Sizes are per process (per GPU)."""

    model: TeacherConfig = Field(
        default_factory=TeacherConfig,
        description="Architecture; speakers are filled in from the corpus's speakers.json.",
    )
    quantize_input: bool = Field(
        True,
        description="Feed the class centres of the mu-law-quantised previous sample, exactly "
        "what generation feeds back, rather than the continuous companded value.",
    )
    sample_frames: int = Field(
        16, gt=0, description="Frames of the generated clip (sampling takes one step per sample)."
    )


def resolve_config(
    path: str | Path | None, speakers: list[str], steps: int | None = None
) -> TeacherTrainConfig:
    """Load a teacher run config and give its model the corpus's speakers.

    Raises:
        ConfigError: for unknown keys or bad values (naming them), or a speaker list in the
            file that differs from the corpus's.
    """
    return resolve_run_config(path, TeacherTrainConfig, speakers, steps)
