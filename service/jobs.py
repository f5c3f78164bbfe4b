"""A request for audio as the inference worker sees it, and what it gets back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Protocol

import torch

__all__ = [
    "BatchObserver",
    "ChunkCallback",
    "Job",
    "QueueFullError",
    "Result",
    "ShuttingDownError",
    "settle",
]

ChunkCallback = Callable[[torch.Tensor], None]


class QueueFullError(RuntimeError):
    """The request queue is full; the caller should retry later."""


class ShuttingDownError(RuntimeError):
    """The worker is stopping and takes no more jobs; the caller should retry (elsewhere)."""


class BatchObserver(Protocol):
    """Receives what the worker does, e.g. to export it as metrics."""

    def batch_done(self, size: int, audio_seconds: float, compute_seconds: float) -> None: ...

    def job_cancelled(self) -> None: ...


@dataclass
class Result:
    """What a finished request gets back.

    Attributes:
        audio (Tensor | None): Waveform (samples,) in [-1, 1] on the CPU; None for a stream,
            whose audio went to its chunk callback.
        inference_s (float): Seconds from the start of its batch to its last sample.
        queue_s (float): Seconds it waited before its batch started.
        f0 (Tensor | None): Of an `f0_only` job: its F0 (frames,) before the shift, on the CPU.
    """

    audio: torch.Tensor | None
    inference_s: float
    queue_s: float
    f0: torch.Tensor | None = None


@dataclass(eq=False)
class Job:
    """One request for audio.

    Attributes:
        mel (Tensor): Log-mel frames (n_mels, frames), float32, on the CPU.
        speaker (int | None): Speaker id, or None.
        temperature (float): Sampling temperature; 0 is deterministic.
        seed (int | None): Seed of a private random generator, for reproducible sampling.
        on_chunk (Callable | None): Called in the worker thread with each audio chunk
            (samples,) as it is made; None to get the whole audio in the result.
        f0 (Tensor | None): F0 (frames,) in Hz, 0 = unvoiced, before the shift, for a
            pitch-aware model; None: the worker predicts it from the mel.
        pitch_shift (float): Semitones the worker shifts F0 by.
        phase (float): Initial phase of the excitation, radians.
        f0_only (bool): Resolve the F0 (sent, or predicted) and return it; make no audio.
        future (Future): Resolves to a `Result`; cancelling it drops the request.
    """

    mel: torch.Tensor
    speaker: int | None = None
    temperature: float = 1.0
    seed: int | None = None
    on_chunk: ChunkCallback | None = None
    f0: torch.Tensor | None = None
    pitch_shift: float = 0.0
    phase: float = 0.0
    f0_only: bool = False
    future: Future = field(default_factory=Future)
    enqueued_at: float = field(default_factory=time.perf_counter)

    @property
    def frames(self) -> int:
        """Mel frames of this request."""
        return self.mel.shape[-1]

    @property
    def private_rng(self) -> bool:
        """Seeded sampling draws from its own generator, so it cannot share a batch."""
        return self.seed is not None and self.temperature > 0

    def batch_key(self) -> tuple:
        """Jobs with equal keys can run in one batch."""
        solo = id(self) if self.private_rng else None
        streams = self.on_chunk is not None
        return (self.temperature, self.speaker is None, streams, solo, self.f0_only)


def settle(future: Future, result: Result | None = None, error: Exception | None = None):
    """Resolve `future` unless its client already cancelled it."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
