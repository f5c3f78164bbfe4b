"""POST /v1/vocode (features to audio) and POST /v1/resynthesize (audio file to audio).

A pitch-aware model's F0: for /v1/vocode the `f0` sent (JSON body, or the query for a .npy
body), else the pitch predictor's from the mel; for /v1/resynthesize tracked from the upload.
Both shift it by `pitch_shift` semitones.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.audio_codec import AudioFormat
from service.deps import ApiKey, RuntimeDep, SettingsDep
from service.inputs import Synthesis, upload_synthesis
from service.limits import read_body
from service.responses import AUDIO_RESPONSES, synthesize
from service.runtime import Runtime
from service.schemas import MAX_SEED, MAX_TEMPERATURE, PitchShift, SynthesisQuery
from service.settings import Settings
from service.vocode_body import body_kind, body_limit, vocode_synthesis

__all__ = ["VOCODE_BODY", "read_upload", "read_vocode", "router"]

router = APIRouter(prefix="/v1", tags=["synthesis"], dependencies=[ApiKey])

# The body is read by the route itself (JSON or .npy), so its schema is declared here.
VOCODE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/VocodeRequest"}},
            "application/x-npy": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "A .npy float array of shape (n_mels, frames), bands "
                    "first (as numpy.save writes a FeatureSpec mel); options, and the f0 of "
                    "a pitch-aware model as base64 float32, in the query.",
                }
            },
        },
    }
}


@router.post(
    "/vocode",
    response_class=Response,
    responses=AUDIO_RESPONSES,
    openapi_extra=VOCODE_BODY,
    summary="Vocode log-mel features into audio",
)
async def vocode(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    query: Annotated[SynthesisQuery, Query()],
) -> Response:
    """Audio for a mel sent as JSON (`VocodeRequest`) or as an application/x-npy body."""
    synthesis = await read_vocode(request, runtime, settings, query)
    return await synthesize(request, runtime, synthesis)


async def read_vocode(
    request: Request, runtime: Runtime, settings: Settings, query: SynthesisQuery
) -> Synthesis:
    """The checked request of a /v1/vocode body (JSON or .npy), its size bounded first."""
    kind = body_kind(request.headers.get("content-type", ""))
    spec = runtime.model.spec
    limit, why = body_limit(kind, spec.n_mels, runtime.max_frames, runtime.pitch is not None)
    if limit >= settings.max_body_bytes:
        limit, why = settings.max_body_bytes, ""
    body = await read_body(request, limit, why)
    speakers, frames = runtime.info.speakers, runtime.max_frames
    return await run_in_threadpool(
        vocode_synthesis, body, kind, query, spec, speakers, frames, runtime.pitch
    )


async def read_upload(
    runtime: Runtime, settings: Settings, data: bytes, options: SynthesisQuery
) -> Synthesis:
    """The checked request of an uploaded file (its F0 tracked, for a pitch-aware model)."""
    rates = (settings.upload_min_rate_hz, settings.upload_max_rate_hz)
    spec, speakers, frames = runtime.model.spec, runtime.info.speakers, runtime.max_frames
    return await run_in_threadpool(
        upload_synthesis, data, options, spec, speakers, frames, rates, runtime.pitch
    )


@router.post(
    "/resynthesize",
    response_class=Response,
    responses=AUDIO_RESPONSES,
    summary="Resynthesize an audio file through the model (copy synthesis)",
)
async def resynthesize(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A wav, flac or ogg file.")],
    speaker: Annotated[str | None, Form(description="Speaker id or name.")] = None,
    audio_format: Annotated[AudioFormat, Form(alias="format")] = "wav",
    temperature: Annotated[float, Form(ge=0, le=MAX_TEMPERATURE)] = 1.0,
    seed: Annotated[int | None, Form(ge=0, le=MAX_SEED)] = None,
    stream: Annotated[bool, Query(description="Send chunks as they are made.")] = False,
    pitch_shift: Annotated[PitchShift, Form()] = 0.0,
) -> Response:
    """Audio made from the features of the uploaded file (the model's FeatureSpec), and for
    a pitch-aware model from the F0 tracked from it, shifted by `pitch_shift`."""
    options = SynthesisQuery(
        speaker=speaker,
        format=audio_format,
        temperature=temperature,
        seed=seed,
        stream=stream,
        pitch_shift=pitch_shift,
    )
    synthesis = await read_upload(runtime, settings, await file.read(), options)
    return await synthesize(request, runtime, synthesis)
