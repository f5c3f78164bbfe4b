"""Turning request inputs into what the model takes, with a clear error for each problem.

Mel layouts, one per input kind, kept as the API has always had them:
- JSON `mel` rows: a list of frames, each of n_mels values (frames x n_mels), as a
  spectrogram is written row by row;
- `mel.b64` with `mel.shape` [n_mels, frames], and an application/x-npy body (n_mels, frames):
  the model's own layout, as `FeatureSpec.extract` and `numpy.save` give it.
A mel sent in the other layout gets a 422 that asks "did you mean the transpose?".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import ValidationError

from service.audio_codec import AudioFormat
from service.schemas import MelArray, SynthesisQuery, VocodeRequest
from wavenet.audio import decode_audio
from wavenet.errors import AudioError, InputTooLongError, UnreadableInputError
from wavenet.features import FeatureSpec
from wavenet.inputs import (
    check_mel,
    check_mel_frames,
    check_mel_shape,
    read_npy_mel,
    resolve_speaker,
)

__all__ = [
    "InputError",
    "Synthesis",
    "mel_from_array",
    "mel_from_rows",
    "upload_synthesis",
    "validation_message",
    "vocode_synthesis",
]

FLOAT32_BYTES = 4
# Validation errors listed in one message; the rest are counted.
MAX_LISTED_ERRORS = 3
UPLOAD_NAME = "the uploaded file"


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
        with reported_as_input_errors():
            mel = read_npy_mel(body, spec.n_mels, max_frames)
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
    data: bytes,
    options: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
    rates: tuple[int, int] | None = None,
) -> Synthesis:
    """A POST /v1/resynthesize request: the uploaded audio's features, with form options.

    `rates` are the lowest and highest sample rates an upload may have, in Hz.
    """
    max_seconds = spec.samples_for(max_frames) / spec.sample_rate
    with reported_as_input_errors(unreadable=415):
        audio = decode_audio(data, spec.sample_rate, max_seconds, rates, name=UPLOAD_NAME)
    return _synthesis(spec.extract(audio), options, spec, speakers, max_frames)


def _synthesis(
    mel: torch.Tensor,
    options: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
) -> Synthesis:
    """A checked request: the mel within limits, the speaker resolved, the options kept."""
    with reported_as_input_errors():
        return Synthesis(
            mel=check_mel(mel, spec.n_mels, max_frames),
            speaker=resolve_speaker(options.speaker, speakers),
            format=options.format,
            temperature=options.temperature,
            seed=options.seed,
            stream=options.stream,
        )


@contextmanager
def reported_as_input_errors(unreadable: int = 422) -> Iterator[None]:
    """Turn the library's input errors into InputErrors: 413 past a limit, `unreadable` for
    a file that cannot be read, 422 for the rest."""
    try:
        yield
    except InputTooLongError as error:
        raise InputError(str(error), status=413) from None
    except UnreadableInputError as error:
        raise InputError(str(error), status=unreadable) from None
    except AudioError as error:
        raise InputError(str(error)) from None


def _parse_json(body: bytes) -> VocodeRequest:
    if not body:
        raise InputError("the request body is empty; send a JSON object with 'mel'")
    try:
        return VocodeRequest.model_validate_json(body)
    except ValidationError as error:
        raise InputError(validation_message(error.errors(include_input=False))) from None


def mel_from_rows(rows: list[list[float]], n_mels: int, max_frames: int) -> torch.Tensor:
    """A JSON mel, a list of frames of n_mels values (frames x n_mels), as (n_mels, frames)."""
    with reported_as_input_errors():
        check_mel_frames(len(rows), max_frames)
        lengths = {len(row) for row in rows}
        if len(lengths) == 1:
            check_mel_shape((len(rows), len(rows[0])), n_mels, "the JSON mel", frames_first=True)
    for index, row in enumerate(rows):
        if len(row) != n_mels:
            raise InputError(
                f"wrong number of mel bands in frame {index} of the JSON mel: expected "
                f"n_mels={n_mels}, got {len(row)} (each row is one frame of n_mels values)"
            )
    return torch.tensor(rows, dtype=torch.float32).T.contiguous()


def mel_from_array(array: MelArray, n_mels: int, max_frames: int) -> torch.Tensor:
    """A base64 float32 mel with its shape [n_mels, frames] as a tensor (n_mels, frames)."""
    with reported_as_input_errors():
        check_mel_shape(array.shape, n_mels, "the base64 mel")
        check_mel_frames(array.shape[1], max_frames)
    bands, frames = array.shape
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


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic/FastAPI validation errors: 'where: what; where: what'."""
    parts = []
    for error in errors[:MAX_LISTED_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"
