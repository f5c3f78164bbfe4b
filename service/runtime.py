"""What the running service holds: the loaded model, its worker, and a description of it.

A pitch-aware model also holds its F0 handling (`wavenet.synthesis_f0.SynthesisF0`), with the
pitch predictor loaded at start: from WAVENET_PITCH_MODEL, else the `pitch` folder beside the
model's. Without a loadable one the service refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.audio_codec import FORMATS
from service.inference import InferenceWorker
from service.jobs import BatchObserver
from service.schemas import ModelInfo, PitchInfo
from service.settings import Settings
from wavenet.checkpoint import load_model
from wavenet.devices import DeviceError, resolve_device
from wavenet.errors import CheckpointError
from wavenet.synthesis_f0 import (
    PITCH_SHIFT_LIMIT,
    SynthesisF0,
    default_predictor_path,
    is_pitch_aware,
    load_pitch_predictor,
)

__all__ = [
    "SERVABLE_KINDS",
    "Runtime",
    "StartupError",
    "check_servable",
    "frame_limit",
    "load_pitch",
    "load_served_model",
    "start_runtime",
]


class StartupError(RuntimeError):
    """The service cannot start; the message says why in one line."""


# Checkpoint kinds the service can vocode with; a classifier or a pitch predictor cannot.
SERVABLE_KINDS = ("student", "teacher")


@dataclass
class Runtime:
    """The served model, the worker that owns it, the frame limit of its requests, and the
    F0 handling of a pitch-aware model (None when it is mel-only)."""

    model: nn.Module
    worker: InferenceWorker
    info: ModelInfo
    max_frames: int
    pitch: SynthesisF0 | None = None

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio the model makes."""
        return self.model.spec.sample_rate


def frame_limit(settings: Settings, kind: str) -> int:
    """Most frames per request: a teacher makes one sample at a time, so it has its own limit
    (at the default, well under a minute of CPU), and the lower of the two applies."""
    if kind == "teacher":
        return min(settings.max_frames, settings.teacher_max_frames)
    return settings.max_frames


def check_servable(model: nn.Module, path: Path) -> None:
    """Raise StartupError unless `model` is of a kind the service can vocode with."""
    kind = getattr(model, "kind", type(model).__name__)
    if kind not in SERVABLE_KINDS:
        raise StartupError(
            f"{path} is a {kind} checkpoint; the service vocodes with a "
            f"{' or '.join(SERVABLE_KINDS)} checkpoint (set WAVENET_MODEL or --model)"
        )


def load_served_model(settings: Settings) -> nn.Module:
    """Load the checkpoint at `settings.model` on the configured device.

    Raises:
        StartupError: naming the path, if the device or the checkpoint is unusable, or the
            checkpoint is not of a kind the service serves.
    """
    try:
        device = resolve_device(settings.device, setting="WAVENET_DEVICE")
    except DeviceError as error:
        raise StartupError(str(error)) from None
    try:
        model = load_model(settings.model, device=device)
    except CheckpointError as error:
        raise StartupError(
            f"cannot load the model: {error} (set WAVENET_MODEL or --model)"
        ) from None
    check_servable(model, settings.model)
    return model


def predictor_path(settings: Settings) -> Path:
    """WAVENET_PITCH_MODEL, else the `pitch` folder beside WAVENET_MODEL's."""
    return settings.pitch_model or default_predictor_path(settings.model)


def load_pitch(settings: Settings, model: nn.Module) -> SynthesisF0 | None:
    """The F0 handling of a pitch-aware `model`, its pitch predictor loaded; None if mel-only.

    Raises:
        StartupError: naming the predictor's path and why it cannot serve the model.
    """
    if not is_pitch_aware(model):
        return None
    path = predictor_path(settings)
    try:
        predictor = load_pitch_predictor(path, model)
    except CheckpointError as error:
        raise StartupError(
            f"the model is pitch-aware and predicts F0 for mels sent without f0, but the "
            f"pitch predictor cannot be used: {error} (set WAVENET_PITCH_MODEL)"
        ) from None
    return SynthesisF0.for_model(model, predictor)


def pitch_info(pitch: SynthesisF0 | None, settings: Settings) -> PitchInfo | None:
    """What GET /v1/models says about a model's F0 (None for a mel-only model)."""
    if pitch is None:
        return None
    return PitchInfo(
        f0_sources={"vocode": "request or predictor", "resynthesize": "tracker"},
        f0_max=pitch.f0_max,
        pitch_shift_range=(-PITCH_SHIFT_LIMIT, PITCH_SHIFT_LIMIT),
        predictor=predictor_path(settings).name,
        tracker=pitch.tracker,
    )


def describe(
    model: nn.Module, path: Path, settings: Settings, pitch: SynthesisF0 | None = None
) -> ModelInfo:
    """What GET /v1/models says about `model`."""
    return ModelInfo(
        name=Path(path).name,
        kind=model.kind,
        sample_rate=model.spec.sample_rate,
        spec=model.spec,
        speakers=list(model.config.speakers),
        receptive_field=model.receptive_field,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        device=str(next(model.parameters()).device),
        max_frames=frame_limit(settings, model.kind),
        formats=list(FORMATS),
        pitch_aware=pitch is not None,
        pitch=pitch_info(pitch, settings),
    )


def start_runtime(
    settings: Settings,
    model: nn.Module | None = None,
    observer: BatchObserver | None = None,
    pitch: SynthesisF0 | None = None,
) -> Runtime:
    """Load the model (unless given) and, for a pitch-aware one, its pitch predictor (unless
    `pitch` is given); start its worker (which warms it up), and return them."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if model is None:
        model = load_served_model(settings)
    check_servable(model, settings.model)
    if pitch is None:
        pitch = load_pitch(settings, model)
    worker = InferenceWorker(
        model,
        max_batch_size=settings.max_batch_size,
        batch_wait_s=settings.batch_wait_ms / 1000,
        queue_size=settings.queue_size,
        chunk_frames=settings.stream_chunk_frames,
        half_precision=settings.half_precision,
        observer=observer,
        pitch=pitch,
    )
    worker.start(warmup_frames=settings.warmup_frames)
    info = describe(model, settings.model, settings, pitch)
    return Runtime(model, worker, info, info.max_frames, pitch)
