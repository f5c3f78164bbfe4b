"""The distillation objective of one batch, and the student's KL to its teacher on held-out mels.

The student turns logistic noise z into companded audio x = g(z) with per-step (mu, log s);
the frozen teacher is run once on that same x (teacher forcing on the student's own sample),
so gradients reach the student both through (mu, log s) and through the teacher's input.
The formulas live in `wavenet.losses`; this module decides which terms to compute.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.distill_config import DistillConfig
from wavenet import mulaw
from wavenet.losses import (
    contrastive_loss,
    kl_distillation,
    multi_resolution_stft_loss,
    perceptual_loss,
    power_loss,
)
from wavenet.student import sample_logistic

__all__ = ["LOGGED_TERMS", "distill_losses", "held_out_kl", "noise_for"]

# Every metrics line carries these keys; a term that was not computed is null.
LOGGED_TERMS = ("kl", "cross_entropy", "entropy", "power", "stft", "perceptual", "contrastive")


def noise_for(shape: tuple[int, int], seed: int, rank: int, step: int, device) -> torch.Tensor:
    """z ~ Logistic(0, 1) (B, T), a pure function of (seed, rank, step): a resumed run draws
    the noise an uninterrupted one would have."""
    (word,) = np.random.SeedSequence([seed, rank, step]).generate_state(1)
    generator = torch.Generator(device=device).manual_seed(int(word))
    return sample_logistic(shape, generator, device)


def _rolled(batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """c2: each item gets the next item's mel and speaker (another utterance's conditioning)."""
    speaker = batch["speaker"]
    return batch["mel"].roll(1, dims=0), None if speaker is None else speaker.roll(1, dims=0)


def distill_losses(
    student: nn.Module,
    teacher: nn.Module,
    classifier: nn.Module | None,
    batch: dict,
    z: torch.Tensor,
    weights: dict[str, float],
    options: DistillConfig,
) -> dict[str, torch.Tensor]:
    """Named terms of one batch, computing only what `weights` switches on.

    The teacher runs (once) when kl or contrastive is on, and a second time on c2 for the
    contrastive term; the classifier only for perceptual; the STFTs only for power and stft.

    Args:
        student (nn.Module): A `Student` (or its DDP wrapper).
        teacher (nn.Module): The frozen teacher.
        classifier (nn.Module | None): The frozen classifier (needed for perceptual).
        batch (dict): audio (B, T) in [-1, 1], mel (B, n_mels, F), speaker (B,) or None.
        z (Tensor): Logistic(0, 1) noise (B, T).
        weights (dict): The terms that are on (see `active_weights`).
        options (DistillConfig): contrastive_gamma, power_fft and stft_resolutions.

    Returns:
        dict: Scalars: kl, cross_entropy and entropy (nats per sample) when the teacher ran,
        and each other term that is on.
    """
    mel, speaker, real = batch["mel"], batch["speaker"], batch["audio"]
    x, mu, log_s = student(z, mel, speaker)
    mu, log_s = mu.float(), log_s.float()  # the exact KL wants fp32 even under autocast
    losses: dict[str, torch.Tensor] = {}
    if "kl" in weights or "contrastive" in weights:
        logits = teacher.forward_companded(x, mel, speaker)
        losses.update(kl_distillation(mu, log_s, logits)._asdict())
    if "contrastive" in weights:
        mismatched = teacher.forward_companded(x, *_rolled(batch))
        gamma = options.contrastive_gamma
        losses["contrastive"] = contrastive_loss(mu, log_s, logits, mismatched, gamma)
    # The waveform the service would serve: expanded, clipped to [-1, 1].
    audio = mulaw.expand(x.float()).clamp(-1.0, 1.0)
    if "power" in weights:
        losses["power"] = power_loss(audio, real, *options.power_fft)
    if "stft" in weights:
        resolutions = tuple(tuple(r) for r in options.stft_resolutions)
        losses["stft"] = multi_resolution_stft_loss(audio, real, resolutions)
    if "perceptual" in weights:
        losses["perceptual"] = perceptual_loss(classifier, audio, real)
    return losses


@torch.no_grad()
def held_out_kl(
    student: nn.Module, teacher: nn.Module, items: list[dict], device, seed: int = 0
) -> dict[str, float]:
    """The student's KL to the teacher on held-out mels, weighted by length (nats per sample).

    Each item is a batch of one: mel (1, n_mels, F), speaker (1,) or None (ignored for a
    student without speakers), and optionally the real audio (1, F * hop). The noise is
    seeded per item, so two calls agree.

    Returns:
        dict: kl, cross_entropy, entropy; with real audio also log_mel_l1 (the student's
        sample against the real clip, `training.metrics.log_mel_l1`) and periodicity (mean
        over clips of `training.metrics.periodicity`: harmonics score high, a whisper low).
    """
    from training.metrics import log_mel_l1, periodicity

    totals = dict.fromkeys(("kl", "cross_entropy", "entropy"), 0.0)
    spectral = {"log_mel_l1": [], "periodicity": []}
    samples = 0
    for index, item in enumerate(items):
        mel = item["mel"].to(device)
        speaker = item.get("speaker") if student.config.speakers else None
        speaker = None if speaker is None else speaker.to(device)
        length = student.spec.samples_for(mel.shape[-1])
        z = noise_for((1, length), seed, 0, index, device)
        x, mu, log_s = student(z, mel, speaker)
        terms = kl_distillation(mu, log_s, teacher.forward_companded(x, mel, speaker))
        for name, value in terms._asdict().items():
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
