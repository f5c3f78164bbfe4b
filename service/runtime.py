"""What the running service holds: the loaded model, its worker, and a description of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.audio_codec import FORMATS
from service.inference import InferenceWorker
from service.jobs import BatchObserver
from service.schemas import ModelInfo
from service.settings import Settings
from wavenet.checkpoint import load_model
from wavenet.devices import DeviceError, resolve_device
from wavenet.errors import CheckpointError

__all__ = ["Runtime", "StartupError", "load_served_model", "start_runtime"]


class StartupError(RuntimeError):
    """The service cannot start; the message says why in one line."""


@dataclass
class Runtime:
    """The served model and the worker that owns it."""

    model: nn.Module
    worker: InferenceWorker
    info: ModelInfo

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio the model makes."""
        return self.model.spec.sample_rate


def load_served_model(settings: Settings) -> nn.Module:
    """Load the checkpoint at `settings.model` on the configured device.

    Raises:
        StartupError: naming the path, if the device or the checkpoint is unusable.
    """
    try:
        device = resolve_device(settings.device, setting="WAVENET_DEVICE")
    except DeviceError as error:
        raise StartupError(str(error)) from None
    try:
        return load_model(settings.model, device=device)
    except CheckpointError as error:
        raise StartupError(
            f"cannot load the model: {error} (set WAVENET_MODEL or --model)"
        ) from None


def describe(model: nn.Module, path: Path, settings: Settings) -> ModelInfo:
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
        max_frames=settings.max_frames,
        formats=list(FORMATS),
    )


def start_runtime(
    settings: Settings, model: nn.Module | None = None, observer: BatchObserver | None = None
) -> Runtime:
    """Load the model (unless given), start its worker (which warms it up), and return both."""
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    if model is None:
        model = load_served_model(settings)
    worker = InferenceWorker(
        model,
        max_batch_size=settings.max_batch_size,
        batch_wait_s=settings.batch_wait_ms / 1000,
        queue_size=settings.queue_size,
        chunk_frames=settings.stream_chunk_frames,
        half_precision=settings.half_precision,
        observer=observer,
    )
    worker.start(warmup_frames=settings.warmup_frames)
    return Runtime(model=model, worker=worker, info=describe(model, settings.model, settings))
