"""POST /v1/vocode/f0 and POST /v1/resynthesize/f0: the F0 a synthesis route would use.

Each takes what its synthesis route takes and answers with the F0 (and its source) that route
would give a pitch-aware model for the same request, before and after `pitch_shift`: the f0
sent or the pitch predictor's for a mel, the tracker's for an upload. The demo page draws it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from service.bridge import ClientGone, unless_disconnected, wait_for_disconnect
from service.deps import ApiKey, RuntimeDep, SettingsDep
from service.errors import CLIENT_CLOSED_REQUEST
from service.inputs import MEL_ONLY, InputError, Synthesis
from service.responses import new_job
from service.routes.synthesis import VOCODE_BODY, read_upload, read_vocode
from service.runtime import Runtime
from service.schemas import F0Track, PitchShift, SynthesisQuery

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["pitch"], dependencies=[ApiKey])

F0_RESPONSES: dict = {
    422: {"description": "Input the model cannot take, or a mel-only model (it uses no F0)."},
    503: {"description": "The queue is full, or the service is shutting down."},
}


@router.post(
    "/vocode/f0",
    response_model=F0Track,
    responses=F0_RESPONSES,
    openapi_extra=VOCODE_BODY,
    summary="The F0 /v1/vocode would use for this body: sent, or predicted from the mel",
)
async def vocode_f0(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    query: Annotated[SynthesisQuery, Query()],
) -> F0Track | Response:
    """The body and options of POST /v1/vocode in; its F0, before and after the shift, out."""
    synthesis = await read_vocode(request, runtime, settings, query)
    return await _f0_track(request, runtime, synthesis)


@router.post(
    "/resynthesize/f0",
    response_model=F0Track,
    responses=F0_RESPONSES,
    summary="The F0 /v1/resynthesize would use for this upload: tracked from it",
)
async def resynthesize_f0(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A wav, flac or ogg file.")],
    pitch_shift: Annotated[PitchShift, Form()] = 0.0,
) -> F0Track | Response:
    """The upload of POST /v1/resynthesize in; its tracked F0, before and after the shift."""
    options = SynthesisQuery(pitch_shift=pitch_shift)
    synthesis = await read_upload(runtime, settings, await file.read(), options)
    return await _f0_track(request, runtime, synthesis)


async def _f0_track(request: Request, runtime: Runtime, synthesis: Synthesis) -> F0Track | Response:
    """Resolve the F0 in the worker (which holds the predictor), as for audio; shift it."""
    if runtime.pitch is None:
        raise InputError(f"{MEL_ONLY}: it uses no F0")
    job = new_job(synthesis, f0_only=True)
    runtime.worker.submit(job)
    try:
        result = await unless_disconnected(
            asyncio.wrap_future(job.future), wait_for_disconnect(request.receive)
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    shifted = runtime.pitch.shifted(result.f0, synthesis.pitch_shift)
    spec = runtime.model.spec
    return F0Track(
        f0=shifted.tolist(),
        unshifted=result.f0.tolist(),
        source=synthesis.f0_source,
        pitch_shift=synthesis.pitch_shift,
        frame_seconds=spec.hop_length / spec.sample_rate,
    )
