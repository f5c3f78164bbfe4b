"""The distillation objective of one batch, and the student's held-out scores: its KL to its
teacher (when there is one) and its sample's spectral distance to the real clip.

The student turns logistic noise z into companded audio x = g(z) with per-step (mu, log s);
the frozen teacher is run on that same x (teacher forcing on the student's own sample), so
gradients reach the student both through (mu, log s) and through the teacher's input.
Which terms exist and how each is computed is the table `training.distill_terms.TERMS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from training.distill_terms import TERMS, StudentSample
from training.pitch_inputs import pitch_inputs
from wavenet import mulaw
from wavenet.losses import kl_distillation
from wavenet.student import sample_logistic

if TYPE_CHECKING:
    from training.distill_config import DistillConfig

__all__ = ["distill_losses", "held_out_kl", "noise_for"]


def noise_for(shape: tuple[int, int], seed: int, rank: int, step: int, device) -> torch.Tensor:
    """z ~ Logistic(0, 1) (B, T), a pure function of (seed, rank, step): a resumed run draws
    the noise an uninterrupted one would have."""
    (word,) = np.random.SeedSequence([seed, rank, step]).generate_state(1)
    generator = torch.Generator(device=device).manual_seed(int(word))
    return sample_logistic(shape, generator, device)


def distill_losses(
    student: nn.Module,
    teacher: nn.Module | None,
    classifier: nn.Module | None,
    batch: dict,
    z: torch.Tensor,
    weights: dict[str, float],
    options: DistillConfig,
) -> dict[str, torch.Tensor]:
    """Named terms of one batch, computing only the TERMS that `weights` switches on.

    Args:
        student (nn.Module): A `Student` (or its DDP wrapper).
        teacher (nn.Module | None): The frozen teacher (for terms that need it).
        classifier (nn.Module | None): The frozen classifier (for terms that need it).
        batch (dict): audio (B, T) in [-1, 1], mel (B, n_mels, F), speaker (B,) or None,
            utterance (B,) (needed by the contrastive term); f0 (B, F) and phase (B,) for a
            pitch-aware student or teacher (both read the same phase).
        z (Tensor): Logistic(0, 1) noise (B, T).
        weights (dict): The terms that are on (see `active_weights`).
        options (DistillConfig): contrastive_gamma, power_fft and stft_resolutions.

    Returns:
        dict: Scalars: each term that is on, and its diagnostic columns (kl brings
        cross_entropy and entropy, in nats per sample).
    """
    pitch = pitch_inputs(options.model, batch)
    x, mu, log_s = student(z, batch["mel"], batch["speaker"], **pitch)
    # The exact KL wants fp32 even under autocast; the audio is what the service would serve.
    audio = mulaw.expand(x.float()).clamp(-1.0, 1.0)
    spec = getattr(student, "module", student).spec  # a DDP wrapper's module, or the student
    sample = StudentSample(
        batch, x, mu.float(), log_s.float(), audio, teacher, classifier, options, spec
    )
    losses: dict[str, torch.Tensor] = {}
    for term in TERMS:
        if term.name in weights:
            losses.update(term.compute(sample))
    return losses


@torch.no_grad()
def held_out_kl(
    student: nn.Module, teacher: nn.Module | None, items: list[dict], device, seed: int = 0
) -> dict[str, float]:
    """The student's KL to the teacher on held-out mels, weighted by length (nats per sample),
    and the spectral scores of its samples.

    Each item is a batch of one: mel (1, n_mels, F), speaker (1,) or None (ignored for a
    student without speakers), f0 (1, F) for pitch-aware models (their excitation from
    phase 0), and optionally the real audio (1, F * hop). The noise is seeded per item, so
    two calls agree.

    Returns:
        dict: kl, cross_entropy, entropy (not with teacher None); with real audio also
        log_mel_l1 (the student's sample against the real clip, `training.metrics.log_mel_l1`)
        and periodicity (mean over clips of `training.metrics.periodicity`: harmonics score
        high, a whisper low).
    """
    from training.metrics import log_mel_l1, periodicity

    names = () if teacher is None else ("kl", "cross_entropy", "entropy")
    totals = dict.fromkeys(names, 0.0)
    spectral = {"log_mel_l1": [], "periodicity": []}
    samples = 0
    for index, item in enumerate(items):
        mel = item["mel"].to(device)
        speaker = item.get("speaker") if student.config.speakers else None
        speaker = None if speaker is None else speaker.to(device)
        length = student.spec.samples_for(mel.shape[-1])
        z = noise_for((1, length), seed, 0, index, device)
        f0 = {"f0": item["f0"].to(device)} if "f0" in item else {}
        x, mu, log_s = student(z, mel, speaker, **pitch_inputs(student.config, f0))
        if teacher is not None:
            pitch = pitch_inputs(teacher.config, f0)
            logits = teacher.forward_companded(x, mel, speaker, **pitch)
            for name, value in kl_distillation(mu, log_s, logits)._asdict().items():
                totals[name] += float(value) * length
        samples += length
        if "audio" in item:
            made = mulaw.expand(x[0]).float().cpu().numpy()
            real = item["audio"][0].float().cpu().numpy()
            spectral["log_mel_l1"].append(log_mel_l1(real, made, student.spec))
            score = periodicity(made, student.spec.sample_rate)
            if score is not None:
                spectral["periodicity"].append(score)
    scores = {name: value / max(samples, 1) for name, value in totals.items()}
    scores.update({name: float(np.mean(v)) for name, v in spectral.items() if v})
    return scores
