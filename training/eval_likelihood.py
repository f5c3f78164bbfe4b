"""Held-out likelihood scores of `wavenet evaluate`: a teacher's NLL, a student's KL to its
teacher.

A pitch-aware model reads each clip's tracker F0 (`training.eval_clips.Clip.f0`); the teacher's
NLL runs the excitation from the clip's own phase, the KL from phase 0 (that of
`training.distill_losses.held_out_kl`, which the distillation's held-out curve uses too).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from training import metrics
from training.config import ConfigError
from training.eval_clips import Clip
from wavenet import mulaw
from wavenet.checkpoint import load_model
from wavenet.excitation import advance_phase

__all__ = ["KL_FRAMES", "student_kl", "teacher_nll"]

KL_FRAMES = 64  # about 1 s at hop 256: the student's and teacher's context many times over


@torch.no_grad()
def teacher_nll(
    model: nn.Module, clips: list[Clip], device: torch.device, chunk_frames: int = 128
) -> float:
    """Held-out NLL in bits per sample over whole clips (teacher forced, quantised input).

    Clips are scored `chunk_frames` frames at a time, to bound memory on long utterances.
    Each chunk runs with the frames before it that the receptive field and the mel encoder
    reach, and the frames after it that the encoder reaches, so every prediction equals the
    one a single pass over the whole clip would make; a pitch-aware teacher gets that
    window of the whole clip's excitation (tracker F0, the clip's phase).
    """
    hop = model.spec.hop_length
    reach = model.conditioning_context
    before = math.ceil((model.receptive_field + 1) / hop) + reach
    bits, samples = 0.0, 0
    for clip in clips:
        frames = clip.mel.shape[-1]
        speaker = None if clip.speaker is None else torch.tensor([clip.speaker], device=device)
        for start in range(0, frames, chunk_frames):
            stop = min(start + chunk_frames, frames)
            first, last = max(start - before, 0), min(stop + reach, frames)
            audio = torch.from_numpy(clip.audio[first * hop : last * hop]).view(1, -1).to(device)
            classes = mulaw.encode(audio)
            mel = clip.mel[None, :, first:last].to(device)
            e = _excitation_window(model, clip, first, last, device)
            logits = model(mulaw.decode(classes), mel, speaker, excitation=e)
            scored = slice((start - first) * hop, (stop - first) * hop)
            count = scored.stop - scored.start
            bits += float(metrics.nll_bits(logits[..., scored], classes[:, scored])) * count
            samples += count
    return bits / max(samples, 1)


def _excitation_window(
    model: nn.Module, clip: Clip, first: int, last: int, device: torch.device
) -> torch.Tensor | None:
    """The excitation of frames [first, last) of the whole clip (None for a mel-only model)."""
    if model.config.excitation is None:
        return None
    if clip.f0 is None:
        raise ConfigError(f"the {model.kind} is pitch-aware: clip {clip.id} has no F0")
    f0 = torch.from_numpy(clip.f0).float()[None].to(device)
    phase = torch.tensor([clip.phase], dtype=torch.float64, device=device)
    phase = advance_phase(f0, model.spec, phase, 0, first)
    e, _ = model.excitation_signal(f0, phase, f0.shape[-1], first, last)
    return e


def student_kl(
    model: nn.Module, teacher_dir: str | Path, clips: list[Clip], device: torch.device
) -> dict[str, float]:
    """The student's KL (and its cross-entropy and entropy) to its teacher, over held-out clips.

    Scored on the first `KL_FRAMES` frames of every clip, in nats per sample: the exact KL of
    distillation, the teacher run on the student's own sample.

    Raises:
        ConfigError: if `model` is not a student, or the teacher's FeatureSpec or speakers
            differ from the student's.
    """
    from training.distill_losses import held_out_kl

    if model.kind != "student":
        raise ConfigError(f"--teacher scores a student's KL; the model is a {model.kind}")
    teacher = load_model(teacher_dir, device=device)
    if teacher.kind != "teacher" or teacher.spec != model.spec:
        raise ConfigError(f"{teacher_dir}: not a teacher with the student's FeatureSpec")
    if list(teacher.config.speakers) != list(model.config.speakers):
        raise ConfigError(f"{teacher_dir}: the teacher's speakers differ from the student's")
    items = []
    for clip in clips:
        item = {
            "mel": clip.mel[None, :, :KL_FRAMES],
            "speaker": None if clip.speaker is None else torch.tensor([clip.speaker]),
        }
        if clip.f0 is not None:
            item["f0"] = torch.from_numpy(clip.f0[:KL_FRAMES]).float()[None]
        items.append(item)
    return held_out_kl(model, teacher, items, device)
