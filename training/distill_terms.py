"""The distillation terms: one table (TERMS) of what each term is, needs and computes.

The config's weights (`training.distill_config.LossWeights`), the logged columns
(LOGGED_TERMS), which terms the KL warm-up holds back, and the total of a step,
sum(weights[k] * term_k) (`training.loop.weighted_total`), all follow from TERMS: adding a
term is one entry there plus its function here. The formulas live in `wavenet.losses`.

The paper's contrastive loss, KL(c1) - gamma KL(c2), is two entries: `kl` is KL(c1) and
`contrastive` is -gamma KL(c2), so with both weights 1 the total holds the matched KL once
and the mismatched one at -gamma.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from training.pitch_inputs import pitch_inputs
from wavenet.losses import (
    contrastive_loss,
    kl_distillation,
    log_mel_loss,
    multi_resolution_stft_loss,
    perceptual_loss,
    power_loss,
)

if TYPE_CHECKING:
    from training.distill_config import DistillConfig
    from wavenet.features import FeatureSpec

__all__ = [
    "LOGGED_TERMS",
    "TEACHER_TERMS",
    "TERMS",
    "StudentSample",
    "Term",
    "contrast_batch",
    "contrast_partners",
]


@dataclass
class StudentSample:
    """One batch, the student's sample of it, and the frozen models that judge it.

    Attributes:
        batch (dict): audio (B, T) in [-1, 1], mel (B, n_mels, F), speaker (B,) or None,
            utterance (B,) (each crop's utterance, for the contrastive term).
        x (Tensor): The student's sample g(z) (B, T), companded.
        mu (Tensor): Its location per step (B, T), fp32.
        log_s (Tensor): Its log scale per step (B, T), fp32.
        audio (Tensor): x expanded and clipped to [-1, 1] (B, T): what the service serves.
        teacher (nn.Module | None): The frozen teacher, when a term needs it.
        classifier (nn.Module | None): The frozen classifier, when a term needs it.
        options (DistillConfig): contrastive_gamma, power_fft, stft_resolutions.
        spec (FeatureSpec): The student's features (for the log-mel term).
    """

    batch: dict
    x: torch.Tensor
    mu: torch.Tensor
    log_s: torch.Tensor
    audio: torch.Tensor
    teacher: nn.Module | None
    classifier: nn.Module | None
    options: DistillConfig
    spec: FeatureSpec


def _teacher_logits(teacher: nn.Module, x: torch.Tensor, conditioning: dict) -> torch.Tensor:
    """p_T(. | x_<t, c) (B, 256, T) with c read off a batch's conditioning fields (with F0
    and phase for a pitch-aware teacher)."""
    pitch = pitch_inputs(teacher.config, conditioning)
    return teacher.forward_companded(x, conditioning["mel"], conditioning["speaker"], **pitch)


def contrast_partners(utterance: torch.Tensor) -> torch.Tensor:
    """For each item, the first item after it (cyclically) cut from another utterance.

        utterance  [7, 7, 3, 7]        [5, 5]
        partner    [2, 2, 3, 2]        [-1, -1]

    Another crop of the same utterance is no contrast (same speaker, same words), so it is
    skipped; -1 marks an item whose batch holds no other utterance.

    Args:
        utterance (Tensor): Each item's utterance index (B,).

    Returns:
        Tensor: Partner index per item (B,), int64, -1 for none.
    """
    ids = utterance.tolist()
    count = len(ids)
    partners = [
        next((j % count for j in range(i + 1, i + count) if ids[j % count] != ids[i]), -1)
        for i in range(count)
    ]
    return torch.tensor(partners, dtype=torch.long)


def contrast_batch(batch: dict) -> tuple[torch.Tensor, dict]:
    """c2 for the contrastive term: each item's partner's conditioning (`contrast_partners`).

    Every field of the partner is taken (mel, speaker, F0 and phase, whatever the batch
    carries), so c2 is wholly another utterance's conditioning.

    Returns:
        tuple: The items that have a partner (K,), and the batch of their partners (every
        field indexed to K rows; a None field stays None).

    Raises:
        ValueError: if the batch does not say which utterance each crop came from.
    """
    if "utterance" not in batch:
        raise ValueError(
            "the contrastive term needs each crop's utterance (batch['utterance'], from "
            "training.distill.DistillCrops) to take c2 from another utterance"
        )
    partners = contrast_partners(batch["utterance"]).to(batch["mel"].device)
    items = (partners >= 0).nonzero().squeeze(1)
    chosen = partners[items]
    return items, {k: None if v is None else v[chosen] for k, v in batch.items()}


def _kl(sample: StudentSample) -> dict[str, torch.Tensor]:
    logits = _teacher_logits(sample.teacher, sample.x, sample.batch)
    return kl_distillation(sample.mu, sample.log_s, logits)._asdict()


def _power(sample: StudentSample) -> dict[str, torch.Tensor]:
    options = sample.options
    return {"power": power_loss(sample.audio, sample.batch["audio"], *options.power_fft)}


def _stft(sample: StudentSample) -> dict[str, torch.Tensor]:
    resolutions = tuple(tuple(r) for r in sample.options.stft_resolutions)
    return {"stft": multi_resolution_stft_loss(sample.audio, sample.batch["audio"], resolutions)}


def _mel(sample: StudentSample) -> dict[str, torch.Tensor]:
    return {"mel": log_mel_loss(sample.audio, sample.batch["audio"], sample.spec)}


def _perceptual(sample: StudentSample) -> dict[str, torch.Tensor]:
    real = sample.batch["audio"]
    return {"perceptual": perceptual_loss(sample.classifier, sample.audio, real)}


def _contrastive(sample: StudentSample) -> dict[str, torch.Tensor]:
    """-gamma KL(P_S(c1) || P_T(c2)) over the items with a partner; 0 when none has one."""
    items, partners = contrast_batch(sample.batch)
    if items.numel() == 0:
        return {"contrastive": sample.mu.new_zeros(())}
    logits = _teacher_logits(sample.teacher, sample.x[items], partners)
    gamma = sample.options.contrastive_gamma
    return {"contrastive": contrastive_loss(sample.mu[items], sample.log_s[items], logits, gamma)}


def _no_stft(options: DistillConfig) -> list[int]:
    return []


@dataclass(frozen=True)
class Term:
    """One distillation term: its weight in the config, what it needs, how it is computed."""

    name: str  # the weight field in loss_weights and the column in metrics.jsonl
    default_weight: float  # its weight when a config leaves it out (0 = off)
    description: str  # the weight field's description in the config schema
    compute: Callable[[StudentSample], dict[str, torch.Tensor]]  # {name: value, **columns}
    needs_teacher: bool = False  # runs the teacher: off in the KL warm-up, then ramped in
    needs_classifier: bool = False  # the frozen classifier must be given (--classifier)
    columns: tuple[str, ...] = ()  # diagnostics `compute` also returns, logged, not weighted
    fft_sizes: Callable[[DistillConfig], list[int]] = _no_stft  # crops must exceed max / 2


# Every term, in the order of the metrics columns.
TERMS = (
    Term(
        "kl",
        1.0,
        "KL(P_S(c1) || P_T(c1)), exact, in nats per sample.",
        _kl,
        needs_teacher=True,
        columns=("cross_entropy", "entropy"),
    ),
    Term(
        "power",
        0.0,
        "Time-averaged STFT power (the paper's).",
        _power,
        fft_sizes=lambda options: [options.power_fft[0]],
    ),
    Term(
        "stft",
        0.0,
        "Frame-wise multi-resolution STFT magnitude.",
        _stft,
        fft_sizes=lambda options: [n_fft for n_fft, _ in options.stft_resolutions],
    ),
    Term(
        "mel",
        0.0,
        "Log-mel L1 against the real crop (the features' own mel and log floor).",
        _mel,
    ),
    Term(
        "perceptual",
        0.0,
        "Classifier feature Gram matrices.",
        _perceptual,
        needs_classifier=True,
    ),
    Term(
        "contrastive",
        0.0,
        "-contrastive_gamma KL(P_S(c1) || P_T(c2)), c2 another utterance's conditioning: "
        "with the kl weight, 1 gives the paper's KL(c1) - gamma KL(c2).",
        _contrastive,
        needs_teacher=True,
    ),
)

# Every metrics line carries these keys; a term that was not computed is null.
LOGGED_TERMS = tuple(column for term in TERMS for column in (term.name, *term.columns))

# The terms the KL warm-up holds back and then ramps in together.
TEACHER_TERMS = tuple(term.name for term in TERMS if term.needs_teacher)
