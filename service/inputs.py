"""Turning request inputs into what the model takes, with a clear error for each problem."""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import ValidationError

from service.audio_codec import AudioFormat, decode_upload
from service.schemas import MelArray, SynthesisQuery, VocodeRequest
from wavenet.features import FeatureSpec

__all__ = [
    "InputError",
    "Synthesis",
    "check_mel",
    "mel_from_array",
    "mel_from_npy",
    "mel_from_rows",
    "resolve_speaker",
    "upload_synthesis",
    "validation_message",
    "vocode_synthesis",
]

FLOAT32_BYTES = 4
# Natural-log mel magnitudes of real audio lie within a few tens of zero; values far beyond
# this overflow the model's float32 arithmetic.
MAX_MEL_MAGNITUDE = 1e3
# Validation errors listed in one message; the rest are counted.
MAX_LISTED_ERRORS = 3


class InputError(ValueError):
    """A request input the model cannot take; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class Synthesis:
    """One request for audio, with its inputs checked.

    Attributes:
        mel (Tensor): Log-mel frames (n_mels, frames).
        speaker (int | None): Speaker id.
        format (str): Output format.
        temperature (float): Sampling temperature.
        seed (int | None): Seed for reproducible sampling.
        stream (bool): Send chunks as they are made.
    """

    mel: torch.Tensor
    speaker: int | None
    format: AudioFormat
    temperature: float
    seed: int | None
    stream: bool


def vocode_synthesis(
    body: bytes,
    content_type: str,
    query: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
) -> Synthesis:
    """A POST /v1/vocode request: a JSON body with options, or a .npy body with query options."""
    mime = content_type.split(";")[0].strip().lower() or "application/json"
    if mime == "application/x-npy":
        mel = mel_from_npy(body, spec.n_mels, max_frames)
        options = query
    elif mime == "application/json" or mime.endswith("+json"):
        request = _parse_json(body)
        if isinstance(request.mel, MelArray):
            mel = mel_from_array(request.mel, spec.n_mels, max_frames)
        else:
            mel = mel_from_rows(request.mel, spec.n_mels, max_frames)
        given = request.model_dump(exclude={"mel"}, exclude_none=True)
        options = query.model_copy(update=given)
    else:
        raise InputError(
            f"unsupported Content-Type {mime!r}; send application/json or application/x-npy",
            status=415,
        )
    return _synthesis(mel, options, spec, speakers, max_frames)


def upload_synthesis(
    data: bytes, options: SynthesisQuery, spec: FeatureSpec, speakers: list[str], max_frames: int
) -> Synthesis:
    """A POST /v1/resynthesize request: the uploaded audio's features, with form options."""
    max_seconds = spec.samples_for(max_frames) / spec.sample_rate
    audio = decode_upload(data, spec.sample_rate, max_seconds)
    return _synthesis(spec.extract(audio), options, spec, speakers, max_frames)


def _synthesis(
    mel: torch.Tensor,
    options: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
) -> Synthesis:
    """A checked request: the mel within limits, the speaker resolved, the options kept."""
    return Synthesis(
        mel=check_mel(mel, spec, max_frames),
        speaker=resolve_speaker(options.speaker, speakers),
        format=options.format,
        temperature=options.temperature,
        seed=options.seed,
        stream=options.stream,
    )


def _parse_json(body: bytes) -> VocodeRequest:
    if not body:
        raise InputError("the request body is empty; send a JSON object with 'mel'")
    try:
        return VocodeRequest.model_validate_json(body)
    except ValidationError as error:
        raise InputError(validation_message(error.errors(include_input=False))) from None


def mel_from_rows(rows: list[list[float]], n_mels: int, max_frames: int) -> torch.Tensor:
    """A JSON mel, a list of frames of n_mels values, as a tensor (n_mels, frames)."""
    _check_frames(len(rows), max_frames)
    for index, row in enumerate(rows):
        if len(row) != n_mels:
            raise InputError(
                f"wrong number of mel bands in frame {index}: expected n_mels={n_mels}, "
                f"got {len(row)}"
            )
    return torch.tensor(rows, dtype=torch.float32).T.contiguous()


def mel_from_array(array: MelArray, n_mels: int, max_frames: int) -> torch.Tensor:
    """A base64 float32 mel with its shape [n_mels, frames] as a tensor (n_mels, frames)."""
    bands, frames = array.shape
    if bands != n_mels:
        raise InputError(f"wrong number of mel bands: expected n_mels={n_mels}, got {bands}")
    _check_frames(frames, max_frames)
    try:
        data = base64.b64decode(array.b64, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("mel.b64 is not valid base64") from None
    expected = bands * frames * FLOAT32_BYTES
    if len(data) != expected:
        raise InputError(
            f"mel.b64 holds {len(data)} bytes; shape {list(array.shape)} of float32 "
            f"needs {expected}"
        )
    values = np.frombuffer(data, dtype="<f4").reshape(bands, frames)
    return torch.from_numpy(values.astype(np.float32))


def mel_from_npy(data: bytes, n_mels: int, max_frames: int) -> torch.Tensor:
    """An application/x-npy body holding a float array (n_mels, frames)."""
    if not data:
        raise InputError("the request body is empty; send a .npy array (n_mels, frames)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # numpy raises several types for malformed files
        raise InputError(f"the body is not a readable .npy array ({error})") from None
    if array.ndim != 2:
        raise InputError(f"the .npy array must be 2-D (n_mels, frames), got shape {array.shape}")
    if array.shape[0] != n_mels:
        raise InputError(
            f"wrong number of mel bands: expected n_mels={n_mels}, got {array.shape[0]} "
            "(the array must be (n_mels, frames))"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"the .npy array must hold floats, got {array.dtype}")
    _check_frames(array.shape[1], max_frames)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def check_mel(mel: torch.Tensor, spec: FeatureSpec, max_frames: int) -> torch.Tensor:
    """Check a mel (n_mels, frames) against the model and the service limits; return it."""
    if mel.dim() != 2 or mel.shape[0] != spec.n_mels:
        raise InputError(
            f"wrong mel shape: expected (n_mels={spec.n_mels}, frames), got {tuple(mel.shape)}"
        )
    _check_frames(mel.shape[1], max_frames)
    if not torch.isfinite(mel).all():
        raise InputError("the mel contains NaN or infinite values")
    largest = mel.abs().max().item()
    if largest > MAX_MEL_MAGNITUDE:
        raise InputError(
            f"mel values must be natural-log magnitudes within +-{MAX_MEL_MAGNITUDE:g}; "
            f"got {largest:g}"
        )
    return mel


def _check_frames(frames: int, max_frames: int) -> None:
    if frames <= 0:
        raise InputError(f"the mel has {frames} frames; send at least one")
    if frames > max_frames:
        raise InputError(
            f"the mel has {frames} frames; this service accepts at most {max_frames}", status=413
        )


def resolve_speaker(value: int | str | None, speakers: list[str]) -> int | None:
    """A speaker id from an id or a name, checked against the model's speakers."""
    if value is None or value == "":
        return None
    if not speakers:
        raise InputError("this model has a single speaker; leave out 'speaker'")
    if isinstance(value, str) and value in speakers:
        return speakers.index(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < len(speakers):
        return value
    known = ", ".join(f"{index}={name}" for index, name in enumerate(speakers))
    raise InputError(f"unknown speaker {value!r}; valid speakers (id=name): {known}")


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic/FastAPI validation errors: 'where: what; where: what'."""
    parts = []
    for error in errors[:MAX_LISTED_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"
