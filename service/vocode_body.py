"""The bodies of POST /v1/vocode, each read at a cost bounded by the mel it may carry.

Mel layouts, one per input kind, kept as the API has always had them:
- JSON `mel` rows: a list of frames, each of n_mels values (frames x n_mels), as a
  spectrogram is written row by row;
- JSON `mel` as {b64, shape: [n_mels, frames]}, and an application/x-npy body
  (n_mels, frames): the model's own layout, as `FeatureSpec.extract` and `numpy.save` give it.
A mel sent in the other layout gets a 422 that asks "did you mean the transpose?".

An `f0` (pitch-aware models) comes in the JSON body, or for a .npy body in the query string
(`service.f0_body`); a JSON body's own options win over the query's.

Costs are bounded before they are paid: the body may be no longer than a mel of max_frames x
n_mels values and an F0 per frame need (`body_limit`, checked against Content-Length before
reading), a JSON body may hold no more values and containers than those (counted on the raw
bytes before parsing), and its frames are counted and checked before any value is converted.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np
import torch
from pydantic import ValidationError

from service.f0_body import f0_from_base64, f0_from_json
from service.inputs import (
    InputError,
    Synthesis,
    checked_synthesis,
    reported_as_input_errors,
    validation_message,
)
from service.schemas import MelArray, SynthesisQuery, VocodeRequest
from wavenet.features import FeatureSpec
from wavenet.inputs import check_mel_frames, check_mel_shape, read_npy_mel
from wavenet.synthesis_f0 import SynthesisF0

__all__ = ["body_kind", "body_limit", "mel_from_array", "mel_from_rows", "vocode_synthesis"]

FLOAT32_BYTES = 4
# A number of a JSON mel takes at most this many bytes on average: a float written in full
# (-1.2345678901234567e-05 is 23 characters), its comma, and some white space.
JSON_BYTES_PER_VALUE = 32
# Room in a JSON body for what is not the mel's values: braces, keys and the options.
JSON_OVERHEAD_BYTES = 4096
# Commas and brackets of a JSON body beyond one per value, one per frame and one per F0.
JSON_OVERHEAD_TOKENS = 64
# A .npy body holds float64 values at most, after a header (numpy writes 128 bytes).
NPY_VALUE_BYTES = 8
NPY_HEADER_BYTES = 4096
NUMBER_TYPES = (int, float)  # JSON numbers as json.loads gives them (bool is not one)


def body_kind(content_type: str) -> str:
    """ "json" or "npy" from a Content-Type (JSON when none is given); 415 for anything else."""
    mime = content_type.split(";")[0].strip().lower() or "application/json"
    if mime == "application/x-npy":
        return "npy"
    if mime == "application/json" or mime.endswith("+json"):
        return "json"
    raise InputError(
        f"unsupported Content-Type {mime!r}; send application/json or application/x-npy",
        status=415,
    )


def body_limit(kind: str, n_mels: int, max_frames: int, f0: bool = False) -> tuple[int, str]:
    """The most bytes a body of `kind` needs for a mel of max_frames x n_mels (and, in JSON
    to a pitch-aware model, with `f0`, an F0 per frame), and why."""
    if kind == "npy":
        limit = max_frames * n_mels * NPY_VALUE_BYTES + NPY_HEADER_BYTES
        return limit, f"a .npy mel of {max_frames} x n_mels={n_mels} float64 values"
    limit = max_frames * (n_mels + f0) * JSON_BYTES_PER_VALUE + JSON_OVERHEAD_BYTES
    why = f"a JSON mel of {max_frames} frames x n_mels={n_mels} values"
    return limit, why + (
        " and an f0 per frame" if f0 else ""
    ) + f" at {JSON_BYTES_PER_VALUE} bytes each"


def vocode_synthesis(
    body: bytes,
    kind: str,
    query: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
    pitch: SynthesisF0 | None = None,
) -> Synthesis:
    """A POST /v1/vocode request: a JSON body with options, or a .npy body with query options;
    `pitch` is the served model's F0 handling (None when it is mel-only)."""
    if kind == "npy":
        with reported_as_input_errors():
            mel = read_npy_mel(body, spec.n_mels, max_frames)
        f0 = None if query.f0 is None else f0_from_base64(query.f0, mel.shape[-1])
        return checked_synthesis(mel, query, spec, speakers, max_frames, pitch, f0)
    mel, request, sent_f0 = _parse_json(body, spec.n_mels, max_frames, pitch is not None)
    if isinstance(request.mel, MelArray):
        mel = mel_from_array(request.mel, spec.n_mels, max_frames)
    given = request.model_dump(exclude={"mel", "f0"}, exclude_none=True)
    options = query.model_copy(update=given)
    frames = mel.shape[-1]
    if sent_f0 is not None:
        f0 = f0_from_json(sent_f0, frames)
    else:
        f0 = None if query.f0 is None else f0_from_base64(query.f0, frames)
    return checked_synthesis(mel, options, spec, speakers, max_frames, pitch, f0)


def _parse_json(
    body: bytes, n_mels: int, max_frames: int, f0: bool = False
) -> tuple[torch.Tensor | None, VocodeRequest, object]:
    """The JSON body's mel rows as a tensor (None for a base64 mel), its validated options,
    and its f0 as sent (None if left out); with `f0`, room is made for one per frame.

    The rows (and the f0, in `f0_from_json`) are checked here, frames first, so that a body
    of many wrong values costs one error rather than one per value; pydantic validates the
    rest.
    """
    if not body:
        raise InputError("the request body is empty; send a JSON object with 'mel'")
    tokens = body.count(b",") + body.count(b"[") + body.count(b"{")
    if tokens > max_frames * (n_mels + 1 + f0) + JSON_OVERHEAD_TOKENS:
        with_f0 = " and an f0 per frame" if f0 else ""
        raise InputError(
            f"the JSON body holds more values than a mel of at most {max_frames} frames of "
            f"n_mels={n_mels} values{with_f0}",
            status=413,
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InputError(f"the body is not valid JSON ({error})") from None
    rows = document.get("mel") if isinstance(document, dict) else None
    mel = None
    if isinstance(rows, list):
        mel = mel_from_rows(rows, n_mels, max_frames)
        document = {**document, "mel": []}
    f0 = document.get("f0") if isinstance(document, dict) else None
    if f0 is not None:
        document = {**document, "f0": None}
    try:
        return mel, VocodeRequest.model_validate(document), f0
    except ValidationError as error:
        raise InputError(validation_message(error.errors(include_input=False))) from None


def mel_from_rows(rows: list, n_mels: int, max_frames: int) -> torch.Tensor:
    """A JSON mel, a list of frames of n_mels numbers (frames x n_mels), as (n_mels, frames)."""
    with reported_as_input_errors():
        check_mel_frames(len(rows), max_frames)
        width = len(rows[0]) if isinstance(rows[0], list) else None
        if all(isinstance(row, list) and len(row) == width for row in rows):
            check_mel_shape((len(rows), width), n_mels, "the JSON mel", frames_first=True)
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n_mels:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise InputError(
                f"wrong number of mel bands in frame {index} of the JSON mel: expected "
                f"n_mels={n_mels}, got {got} (each row is one frame of n_mels values)"
            )
        if not all(type(value) in NUMBER_TYPES for value in row):
            raise InputError(f"frame {index} of the JSON mel holds a value that is not a number")
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
