"""An `f0` sent to POST /v1/vocode, read into a tensor (frames,) before its values are checked.

Two encodings, as for the mel, each with one value per mel frame in Hz (0 = unvoiced):
- a JSON list of numbers, in the JSON body;
- base64 of little-endian float32 values, in the JSON body or, for an application/x-npy body,
  in the `f0` query parameter. Both base64 alphabets are read (standard and URL-safe), with
  or without `=` padding, and a space is read as the `+` that a query string turns into one.

The length is checked before any value is converted; the values themselves (NaN, negative,
above the model's range) by `wavenet.synthesis_f0.SynthesisF0.check`.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import torch

from service.inputs import InputError

__all__ = ["f0_from_base64", "f0_from_json"]

FLOAT32_BYTES = 4
NUMBER_TYPES = (int, float)  # JSON numbers as json.loads gives them (bool is not one)
ENCODINGS = "a list of numbers or a base64 string of little-endian float32 values"


def f0_from_json(value: object, frames: int) -> torch.Tensor:
    """The `f0` of a JSON body (a list of numbers or a base64 string) as (frames,) float32."""
    if isinstance(value, str):
        return f0_from_base64(value, frames)
    if not isinstance(value, list):
        raise InputError(f"f0 must be {ENCODINGS}, one per mel frame; got {type(value).__name__}")
    _check_count(len(value), frames)
    for index, number in enumerate(value):
        if type(number) not in NUMBER_TYPES:
            raise InputError(f"f0 value {index} is not a number (F0 in Hz, 0 = unvoiced)")
    try:
        values = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise InputError("f0 holds a number too large for a float (F0 in Hz)") from None
    return torch.from_numpy(values.astype(np.float32))


def f0_from_base64(text: str, frames: int) -> torch.Tensor:
    """base64 of little-endian float32 F0 values as (frames,) float32."""
    standard = text.strip().replace("-", "+").replace("_", "/").replace(" ", "+")
    try:
        data = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputError("f0 is not valid base64 (of little-endian float32 values)") from None
    if len(data) % FLOAT32_BYTES:
        raise InputError(f"f0 holds {len(data)} bytes, not a whole number of float32 values")
    _check_count(len(data) // FLOAT32_BYTES, frames)
    return torch.from_numpy(np.frombuffer(data, dtype="<f4").astype(np.float32))


def _check_count(count: int, frames: int) -> None:
    if count != frames:
        raise InputError(
            f"f0 has {count} values but the mel has {frames} frames "
            "(one F0 per frame, in Hz, 0 = unvoiced)"
        )
