"""What every training run shares in its config: schedule, optimizer, logging and checkpoints.

Each job (`train-teacher`, `train-classifier`, `distill`) subclasses `RunConfig`, adding its
`model` section and its own keys, and may change a default by redeclaring the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.config import ConfigError, load_config

__all__ = [
    "CONFIG_FILE",
    "RunConfig",
    "RunConfigT",
    "config_source",
    "resolve_run_config",
    "save_config",
]

CONFIG_FILE = "config.yaml"

RunConfigT = TypeVar("RunConfigT", bound="RunConfig")


class RunConfig(BaseModel):
    """Keys common to all training jobs. Sizes are per process (per GPU)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(200_000, gt=0, description="Optimizer updates in the whole run.")
    batch_size: int = Field(8, gt=0, description="Crops per step per process.")
    segment_frames: int = Field(
        32, gt=0, description="Frames per crop; each crop has segment_frames * hop samples."
    )
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (Adam).")
    warmup_steps: int = Field(1000, ge=0, description="Linear warm-up from 0 to lr.")
    lr_half_life: int = Field(
        50_000, gt=0, description="After warm-up the rate halves every this many steps."
    )
    min_lr: float = Field(1e-5, ge=0, description="Floor of the decayed learning rate.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's beta1, beta2.")
    grad_clip: float = Field(1.0, gt=0, description="Max global L2 norm of the gradients.")
    ema_decay: float = Field(
        0.9999, ge=0, lt=1, description="EMA of the weights; the EMA model is the one saved."
    )
    amp: Literal["none", "bf16", "fp16"] = Field(
        "bf16", description="Autocast dtype on GPU (ignored on CPU, where training is fp32)."
    )
    log_every: int = Field(50, gt=0, description="Steps between metrics.jsonl lines.")
    eval_every: int = Field(1000, gt=0, description="Steps between held-out scores (EMA model).")
    val_utterances: int = Field(8, gt=0, description="Held-out utterances scored.")
    val_frames: int = Field(64, gt=0, description="Frames of each held-out utterance scored.")
    sample_every: int = Field(
        10_000, ge=0, description="Steps between generated held-out clips; 0 for none."
    )
    checkpoint_every: int = Field(1000, gt=0, description="Steps between checkpoints.")
    keep_best: str | None = Field(
        None,
        description=(
            "A held-out score the job reports (a val_* name, lower is better): RUN/best then "
            "holds the EMA model of the evaluation that scored lowest, the untrained start "
            "(step 0) included, so the run's best model is never worse than where it began."
        ),
    )
    seed: int = Field(0, description="Seeds initialisation and the crop draws.")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per process.")

    @model_validator(mode="after")
    def _check_eval_every(self) -> RunConfig:
        if self.eval_every % self.log_every:
            raise ValueError(
                f"eval_every ({self.eval_every}) must be a multiple of log_every "
                f"({self.log_every}), so each held-out score lands on a metrics line"
            )
        return self


def resolve_run_config(
    path: str | Path | None,
    schema: type[RunConfigT],
    speakers: list[str],
    steps: int | None = None,
    derive: Callable[[RunConfigT], dict] | None = None,
) -> RunConfigT:
    """Load a run config and give its `model` section the corpus's speakers.

    Args:
        path (str | Path | None): YAML file; None for the defaults.
        schema (type): The job's RunConfig subclass; its `model` has a `speakers` field.
        speakers (list[str]): The corpus's speaker names (index = id).
        steps (int | None): Overrides `steps` when given.
        derive (Callable | None): Further `model` fields the job derives from the loaded
            config (e.g. a classifier's unit names from n_units).

    Raises:
        ConfigError: for unknown keys or bad values (naming them), or a speaker list (or a
            derived field) written in the file that differs from the one derived.
    """
    config = load_config(path, schema, steps=steps)
    listed = list(config.model.speakers)
    if listed and listed != list(speakers):
        raise ConfigError(
            f"{path}: model.speakers {listed} differs from the corpus's speakers {speakers}"
        )
    derived = derive(config) if derive else {}
    for name, value in derived.items():
        if name in config.model.model_fields_set and getattr(config.model, name) != value:
            raise ConfigError(f"{path}: model.{name} differs from the one derived: {value}")
    fields = {**config.model.model_dump(), **derived, "speakers": speakers}
    model = type(config.model).model_validate(fields)
    return config.model_copy(update={"model": model})


def config_source(path: str | Path | None, out: Path, resume: bool) -> str | Path | None:
    """The config to read: the one given, else on resume the run's own saved config."""
    if path is None and resume and (out / CONFIG_FILE).is_file():
        return out / CONFIG_FILE
    return path


def save_config(config: BaseModel, path: str | Path) -> None:
    """Write the resolved config as YAML that `--config` accepts again."""
    from wavenet.checkpoint import atomic_write_bytes

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_bytes(Path(path), text.encode())
