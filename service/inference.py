"""The inference worker: one thread owns the model and its device, and batches requests.

Requests wait in a bounded queue. The worker takes the oldest one, then gathers others that
can share its batch (same temperature, speaker given or not, no private random seed) for up
to `batch_wait_s`, zero-pads their mels along time and passes their lengths as `mel_lengths`,
so each item comes out as if it had been run alone. A pitch-aware model gets each item's F0
(sent or tracked with the request, else predicted here from its own mel, on the model's
device), shifted by its pitch_shift, zero-padded like the mel, and each item's initial phase.
Audio is handed back chunk by chunk: a
streaming request sees each chunk as it is made, the others get their whole audio once their
own samples are done. A request whose client went away (its future cancelled) is skipped, and
a batch stops early once every request in it is gone.

Nothing here knows about HTTP; the service talks to `InferenceWorker.submit`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future

import torch
import torch.nn.functional as F

from service.chunking import chunk_context, overlapped_chunks
from service.jobs import BatchObserver, Job, QueueFullError, Result, ShuttingDownError, settle
from wavenet.synthesis_f0 import SynthesisF0, is_pitch_aware

__all__ = ["InferenceWorker"]

log = logging.getLogger(__name__)


class InferenceWorker:
    """Owns `model` in one thread and serves queued `Job`s in dynamic batches.

    Args:
        model (nn.Module): A vocoder with `spec`, `generate`, and optionally `stream`.
        max_batch_size (int): Most jobs per batch.
        batch_wait_s (float): How long to wait for more jobs once one has arrived.
        queue_size (int): Jobs that may wait; `submit` raises `QueueFullError` beyond.
        chunk_frames (int): Frames per chunk handed back while generating.
        half_precision (bool): fp16 autocast on CUDA (kept only if the warm-up succeeds).
        observer (BatchObserver | None): Told about every served batch.
        pitch (SynthesisF0 | None): F0 handling of a pitch-aware model, with the predictor
            for jobs sent without F0; None: made from the model, without a predictor.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_batch_size: int = 8,
        batch_wait_s: float = 0.005,
        queue_size: int = 64,
        chunk_frames: int = 16,
        half_precision: bool = False,
        observer: BatchObserver | None = None,
        pitch: SynthesisF0 | None = None,
    ):
        self.model = model
        if pitch is None and is_pitch_aware(model):
            pitch = SynthesisF0.for_model(model)
        self.pitch = pitch
        self.device = next(model.parameters()).device
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.chunk_frames = chunk_frames
        self.autocast = half_precision and self.device.type == "cuda"
        self.observer = observer
        self.ready = threading.Event()
        self.warmup_error: str | None = None
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._pending: deque[Job] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting for a batch."""
        return self._queue.qsize() + len(self._pending)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, job: Job) -> Future:
        """Queue `job` without blocking; returns its future.

        Raises:
            QueueFullError: if `queue_size` jobs are already waiting.
            ShuttingDownError: once `stop` has been called.
        """
        if self._stopping.is_set():
            raise ShuttingDownError("the service is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError("the inference queue is full") from None
        return job.future

    def start(self, warmup_frames: int = 8) -> None:
        """Start the thread; it runs a warm-up batch, then sets `ready` and serves jobs."""
        self._thread = threading.Thread(
            target=self._serve, args=(warmup_frames,), name="inference-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current batch; waiting jobs fail with ShuttingDownError."""
        self._stopping.set()
        self.ready.clear()
        if self._thread is not None:
            self._thread.join(timeout)
        for job in [*self._pending, *_drain(self._queue)]:
            settle(job.future, error=ShuttingDownError("the service is shutting down"))
        self._pending.clear()

    def _serve(self, warmup_frames: int) -> None:
        self._warm_up(warmup_frames)
        while not self._stopping.is_set():
            batch = self._next_batch()
            if batch:
                self._run(batch)

    def _warm_up(self, frames: int) -> None:
        """Run one small batch so the first request does not pay for lazy initialisation."""
        mel = torch.zeros(self.model.spec.n_mels, frames)
        # A pitch-aware model warms up its predictor too, where it has one.
        unvoiced = self.pitch is not None and self.pitch.predictor is None
        f0 = torch.zeros(frames) if unvoiced else None
        for attempt in ("fp16 autocast", "fp32") if self.autocast else ("fp32",):
            job = Job(mel, temperature=0.0, f0=f0)
            self._run([job], observe=False)
            error = job.future.exception()
            if error is None:
                self.ready.set()
                return
            log.warning("warm-up with %s failed: %s", attempt, error)
            self.autocast = False
        self.warmup_error = f"warm-up failed: {error}"

    def _next_batch(self) -> list[Job]:
        """The oldest live job and up to max_batch_size - 1 compatible ones."""
        first = self._pending.popleft() if self._pending else _get(self._queue, timeout=0.1)
        if first is None or self._dropped(first):
            return []
        key = first.batch_key()
        batch = [first]
        for job in list(self._pending):
            if len(batch) < self.max_batch_size and job.batch_key() == key:
                self._pending.remove(job)
                batch.append(job)
        deadline = time.perf_counter() + self.batch_wait_s
        # Stop gathering once enough incompatible jobs wait, so they are not starved.
        while len(batch) < self.max_batch_size and len(self._pending) < self.max_batch_size:
            job = _get(self._queue, timeout=deadline - time.perf_counter())
            if job is None:
                break
            if job.batch_key() == key:
                batch.append(job)
            else:
                self._pending.append(job)
        return [job for job in batch if not self._dropped(job)]

    def _dropped(self, job: Job) -> bool:
        if job.future.cancelled():
            if self.observer is not None:
                self.observer.job_cancelled()
            return True
        return False

    def _run(self, batch: list[Job], observe: bool = True) -> None:
        """Generate a batch and hand each job its samples as they come out (or, for a batch
        of `f0_only` jobs, each its F0)."""
        started = time.perf_counter()
        deliveries = [_Delivery(job, self.model.spec.samples_for(job.frames)) for job in batch]
        offset = 0
        try:
            f0s = [self._job_f0(job) for job in batch]
            if batch[0].f0_only:
                return _hand_f0(batch, f0s, started)
            for chunk in self._generate(batch, f0s):
                chunk = chunk.float().cpu()
                for row, delivery in zip(chunk, deliveries, strict=True):
                    delivery.feed(row, offset, started)
                offset += chunk.shape[-1]
                if all(delivery.done or delivery.gone for delivery in deliveries):
                    break
        except Exception as error:
            log.exception("inference failed for a batch of %d", len(batch))
            for job in batch:
                settle(job.future, error=error)
            return
        if observe and self.observer is not None:
            self._report(deliveries, time.perf_counter() - started)

    def _report(self, deliveries: list[_Delivery], seconds: float) -> None:
        served = [delivery for delivery in deliveries if delivery.done]
        for _ in range(len(deliveries) - len(served)):
            self.observer.job_cancelled()
        samples = sum(delivery.samples for delivery in served)
        self.observer.batch_done(len(deliveries), samples / self.model.spec.sample_rate, seconds)

    def _job_f0(self, job: Job) -> torch.Tensor | None:
        """A job's F0 (frames,) before its shift, on the device: sent (or tracked), else
        predicted from its own mel (so that it does not depend on the batch); None when the
        model is mel-only."""
        if self.pitch is None:
            if job.f0 is not None or job.f0_only:
                raise ValueError("the model is mel-only: it takes no F0")
            return None
        f0 = job.f0 if job.f0 is not None else self.pitch.predict(job.mel)
        return f0.to(self.device)

    def _generate(self, batch: list[Job], f0s: list) -> Iterator[torch.Tensor]:
        """Audio chunks (B, chunk_samples) for the batch, in order; `f0s` are the jobs' F0
        before the shift (None each for a mel-only model)."""
        first = batch[0]
        frames = [job.frames for job in batch]
        mels = [job.mel for job in batch]
        if self.pitch is not None:
            mels = [self.pitch.mel_for(job.mel, job.pitch_shift) for job in batch]
        mel = torch.stack(
            [F.pad(m, (0, max(frames) - job.frames)) for m, job in zip(mels, batch, strict=True)]
        )
        mel = mel.to(self.device)
        mel_lengths = torch.tensor(frames, device=self.device)
        speaker = None
        if first.speaker is not None:
            speaker = torch.tensor([job.speaker for job in batch], device=self.device)
        generator = None
        if first.private_rng:
            generator = torch.Generator(device=self.device).manual_seed(first.seed)
        options = dict(
            temperature=first.temperature,
            mel_lengths=mel_lengths if min(frames) < max(frames) else None,
            generator=generator,
        )
        if self.pitch is not None:
            shifts = [job.pitch_shift for job in batch]
            options["f0"] = self.pitch.batch(f0s, shifts)
            phases = [job.phase for job in batch]
            options["phase"] = torch.tensor(phases, dtype=torch.float64, device=self.device)
            options |= self.pitch.shift_options(self.model, shifts, self.device)
        autocast = torch.autocast("cuda", torch.float16) if self.autocast else _no_autocast()
        with torch.inference_mode(), autocast:
            yield from self._chunks(mel, speaker, mel_lengths, options, stream=bool(first.on_chunk))

    def _chunks(self, mel, speaker, mel_lengths, options, stream: bool) -> Iterator[torch.Tensor]:
        model = self.model
        if hasattr(model, "stream"):
            yield from model.stream(mel, speaker, frames_per_chunk=self.chunk_frames, **options)
        elif stream:
            spec = model.spec
            context = chunk_context(
                model.receptive_field, spec.hop_length, model.conditioning_context
            )
            options.pop("mel_lengths")

            def vocode(window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                return model.generate(window, speaker, mel_lengths=lengths, **options)

            yield from overlapped_chunks(
                vocode, mel, mel_lengths, spec.hop_length, self.chunk_frames, context
            )
        else:
            yield model.generate(mel, speaker, **options)


class _Delivery:
    """Hands one job its rows of a batch's chunks, up to its own length, then its result."""

    def __init__(self, job: Job, samples: int):
        self.job = job
        self.samples = samples
        self.parts: list[torch.Tensor] = []
        self.done = False

    @property
    def gone(self) -> bool:
        """Its client went away before it was done."""
        return not self.done and self.job.future.cancelled()

    def feed(self, row: torch.Tensor, offset: int, started: float) -> None:
        """Take this job's part of a chunk row (chunk_samples,) that starts at sample `offset`."""
        if self.done or self.gone:
            return
        piece = row[: self.samples - offset]
        if self.job.on_chunk is None:
            self.parts.append(piece)
        elif piece.numel() > 0:
            self.job.on_chunk(piece)
        if offset + row.shape[-1] >= self.samples:
            self.done = True
            audio = torch.cat(self.parts) if self.job.on_chunk is None else None
            elapsed = time.perf_counter() - started
            settle(self.job.future, Result(audio, elapsed, started - self.job.enqueued_at))


def _hand_f0(batch: list[Job], f0s: list[torch.Tensor], started: float) -> None:
    """Settle each `f0_only` job with its F0."""
    for job, f0 in zip(batch, f0s, strict=True):
        elapsed, waited = time.perf_counter() - started, started - job.enqueued_at
        settle(job.future, Result(None, elapsed, waited, f0.cpu()))


def _no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _get(jobs: queue.Queue, timeout: float) -> Job | None:
    """The next job, or None if none came within `timeout` seconds."""
    try:
        return jobs.get(timeout=max(timeout, 0.0)) if timeout > 0 else jobs.get_nowait()
    except queue.Empty:
        return None


def _drain(jobs: queue.Queue) -> list[Job]:
    drained = []
    while (job := _get(jobs, 0)) is not None:
        drained.append(job)
    return drained
