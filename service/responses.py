"""From a checked mel to an audio response: queue the job, wait, encode, add headers.

Every audio response carries X-Sample-Rate, X-Audio-Seconds and X-Inference-Ms (model time
of the request's batch; for a stream, the time until its first chunk was ready) and
X-Queue-Ms (time spent waiting for the worker); that of a pitch-aware model X-F0-Source
(request, predictor or tracker).

The excitation of a pitch-aware model starts at phase `wavenet.synthesis_f0.seeded_phase(seed)`:
0 without a seed, else drawn from the seed, so a request sounds the same every time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.audio_codec import (
    MEDIA_TYPES,
    STREAMABLE_FORMATS,
    encode_audio,
    encode_samples,
    stream_header,
)
from service.bridge import ChunkStream, ClientGone, unless_disconnected, wait_for_disconnect
from service.errors import CLIENT_CLOSED_REQUEST
from service.inputs import InputError, Synthesis
from service.jobs import Job
from service.runtime import Runtime
from wavenet.synthesis_f0 import seeded_phase

__all__ = ["AUDIO_RESPONSES", "new_job", "synthesize"]

AUDIO_RESPONSES: dict = {
    200: {
        "description": "The audio, in the requested format.",
        "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
    },
    401: {"description": "Missing or wrong API key (refused before the body is read)."},
    408: {"description": "The body did not arrive within WAVENET_BODY_TIMEOUT_S."},
    413: {"description": "Body or audio over the service's limits."},
    415: {"description": "Unsupported Content-Type or unreadable upload."},
    422: {"description": "Input the model cannot take; the detail says why."},
    503: {
        "description": "The queue is full, or the service is shutting down; retry after "
        "Retry-After seconds."
    },
}


async def synthesize(request: Request, runtime: Runtime, synthesis: Synthesis) -> Response:
    """Run `synthesis` on the worker and answer with its audio."""
    if synthesis.stream and synthesis.format not in STREAMABLE_FORMATS:
        raise InputError(
            f"format {synthesis.format!r} cannot be streamed; "
            f"stream one of {', '.join(STREAMABLE_FORMATS)}"
        )
    if synthesis.stream:
        return await _stream(request, runtime, synthesis)
    job = new_job(synthesis)
    runtime.worker.submit(job)
    try:
        result = await unless_disconnected(
            asyncio.wrap_future(job.future), wait_for_disconnect(request.receive)
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    rate = runtime.sample_rate
    body = await run_in_threadpool(encode_audio, result.audio, rate, synthesis.format)
    headers = _headers(result.audio.numel(), rate, result.inference_s, result.queue_s)
    return Response(body, media_type=MEDIA_TYPES[synthesis.format], headers=_f0(headers, synthesis))


def new_job(synthesis: Synthesis, on_chunk=None, f0_only: bool = False) -> Job:
    """The worker's job for a checked request (the excitation's phase seeded from its seed)."""
    return Job(
        synthesis.mel,
        synthesis.speaker,
        synthesis.temperature,
        synthesis.seed,
        on_chunk=on_chunk,
        f0=synthesis.f0,
        pitch_shift=synthesis.pitch_shift,
        phase=seeded_phase(synthesis.seed),
        f0_only=f0_only,
    )


async def _stream(request: Request, runtime: Runtime, synthesis: Synthesis) -> Response:
    """Answer once the first chunk is ready (so failures still get a status), then stream."""
    chunks = ChunkStream()
    job = new_job(synthesis, on_chunk=chunks.put)
    runtime.worker.submit(job)
    chunks.follow(job.future)
    try:
        first = await unless_disconnected(chunks.next(), wait_for_disconnect(request.receive))
    except ClientGone:
        job.future.cancel()
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except BaseException:
        job.future.cancel()
        raise
    if first is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    waited = time.perf_counter() - job.enqueued_at
    fmt, rate = synthesis.format, runtime.sample_rate

    async def body() -> AsyncIterator[bytes]:
        try:
            yield stream_header(rate, fmt) + encode_samples(first, fmt)
            while (chunk := await chunks.next()) is not None:
                yield encode_samples(chunk, fmt)
        finally:
            # A no-op once the job is done; drops it if the client left mid-stream.
            job.future.cancel()

    samples = runtime.model.spec.samples_for(synthesis.mel.shape[-1])
    headers = _f0(_headers(samples, rate, waited, None), synthesis)
    return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt], headers=headers)


def _f0(headers: dict, synthesis: Synthesis) -> dict:
    if synthesis.f0_source is not None:
        headers["X-F0-Source"] = synthesis.f0_source
    return headers


def _headers(samples: int, rate: int, inference_s: float, queue_s: float | None) -> dict:
    headers = {
        "X-Sample-Rate": str(rate),
        "X-Audio-Seconds": f"{samples / rate:.6f}",
        "X-Inference-Ms": f"{inference_s * 1000:.1f}",
    }
    if queue_s is not None:
        headers["X-Queue-Ms"] = f"{queue_s * 1000:.1f}"
    return headers
