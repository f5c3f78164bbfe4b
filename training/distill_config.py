"""The configuration of a distillation run: YAML keys map onto `DistillConfig`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from training.distill_terms import TEACHER_TERMS, TERMS, Term
from training.run_config import RunConfig, resolve_run_config
from wavenet.losses import STFT_RESOLUTIONS
from wavenet.student import StudentConfig

__all__ = [
    "DistillConfig",
    "KLWarmup",
    "LossWeights",
    "active_weights",
    "resolve_distill_config",
    "terms_on",
]


class _Weights(BaseModel):
    """Weight of each distillation term: total = sum(weight * term). 0 switches a term off,
    and a term that is off is not computed at all (its metrics are null)."""

    model_config = ConfigDict(extra="forbid")


# One field per entry of `training.distill_terms.TERMS`, named as the term.
LossWeights = create_model(
    "LossWeights",
    __base__=_Weights,
    __module__=__name__,
    __doc__=_Weights.__doc__,
    **{
        term.name: (float, Field(term.default_weight, ge=0, description=term.description))
        for term in TERMS
    },
)


class KLWarmup(BaseModel):
    """Spectral-only training first, then the teacher terms (KL, contrastive) ramp in."""

    model_config = ConfigDict(extra="forbid")

    spectral_steps: int = Field(
        0, ge=0, description="Steps with the teacher terms off (the teacher is not run)."
    )
    ramp_steps: int = Field(
        0, ge=0, description="Then their weight rises linearly from 0 to full over this many."
    )

    def factor(self, step: int) -> float:
        """Share of the full teacher-term weight at `step` (0-based): 0, then a ramp, then 1."""
        if step < self.spectral_steps:
            return 0.0
        if self.ramp_steps == 0:
            return 1.0
        return min(1.0, (step - self.spectral_steps + 1) / self.ramp_steps)


class DistillConfig(RunConfig):
    """Everything a distillation run needs besides its data and the frozen models."""

    model: StudentConfig = Field(
        default_factory=StudentConfig,
        description="Student architecture; speakers come from the corpus (= the teacher's).",
    )
    loss_weights: LossWeights = Field(default_factory=LossWeights, description="Term weights.")
    kl_warmup: KLWarmup = Field(default_factory=KLWarmup, description="Optional KL warm-up.")
    contrastive_gamma: float = Field(
        0.3,
        ge=0,
        description="gamma of the contrastive term -gamma KL(P_S(c1) || P_T(c2)) (the paper's "
        "0.3); it is the paper's effective gamma when loss_weights.kl = contrastive = 1.",
    )
    power_fft: tuple[int, int] = Field(
        (1024, 256), description="(n_fft, hop) of the power loss's STFT."
    )
    stft_resolutions: list[tuple[int, int]] = Field(
        list(STFT_RESOLUTIONS),
        min_length=1,
        description="(n_fft, hop) of each resolution of the multi-resolution STFT loss.",
    )
    teacher_nll_gate: float | None = Field(
        6.0,
        description="Warn when the teacher's last held-out NLL (bits/sample, from its run's "
        "metrics.jsonl) is above this; null for no check.",
    )
    sample_frames: int = Field(64, gt=0, description="Frames of the logged generated clip.")

    @model_validator(mode="after")
    def _check_weights(self) -> DistillConfig:
        weights = self.loss_weights.model_dump()
        if not any(weights.values()):
            raise ValueError("loss_weights: every weight is 0, nothing to train")
        spectral = [term.name for term in TERMS if not term.needs_teacher]
        if self.kl_warmup.spectral_steps and not any(weights[name] for name in spectral):
            raise ValueError(f"kl_warmup.spectral_steps needs a weight on one of {spectral}")
        contrast = weights["contrastive"] * self.contrastive_gamma
        if weights["contrastive"] and contrast >= weights["kl"]:
            # Mass moved off the teacher's bins raises KL(c1) and KL(c2) alike, so the total
            # falls without bound once the mismatched KL outweighs the matched one.
            raise ValueError(
                f"loss_weights.contrastive x contrastive_gamma ({contrast:g}) must be below "
                f"loss_weights.kl ({weights['kl']:g}), or the total is unbounded below"
            )
        if weights["contrastive"] and self.batch_size < 2:
            raise ValueError("the contrastive loss needs batch_size >= 2 (c2 = another item)")
        return self


def terms_on(config: DistillConfig) -> list[Term]:
    """The TERMS with a weight above 0 in `config` (during the warm-up too)."""
    return [term for term in TERMS if getattr(config.loss_weights, term.name) > 0]


def active_weights(config: DistillConfig, step: int) -> dict[str, float]:
    """The weight of every term that is on at `step`; terms with weight 0 are left out."""
    factor = config.kl_warmup.factor(step)
    weights = {
        name: weight * (factor if name in TEACHER_TERMS else 1.0)
        for name, weight in config.loss_weights.model_dump().items()
    }
    return {name: weight for name, weight in weights.items() if weight > 0}


def resolve_distill_config(
    path: str | Path | None, speakers: list[str], steps: int | None = None
) -> DistillConfig:
    """Load a distillation config; the student gets the corpus's speakers.

    Raises:
        ConfigError: for unknown keys or bad values (naming them).
    """
    return resolve_run_config(path, DistillConfig, speakers, steps)
