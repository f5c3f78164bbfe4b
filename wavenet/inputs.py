"""What a caller hands a model, checked: a mel (from any source, or a .npy file) and a speaker.

The models take a mel as (n_mels, frames). Callers that hold the other layout (the HTTP API's
JSON rows are frames x n_mels) say so with `frames_first`; either way, a shape that is the
transpose of a valid one gets an error that asks "did you mean the transpose?".
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from wavenet.errors import AudioError, InputTooLongError, UnreadableInputError

__all__ = [
    "MAX_MEL_MAGNITUDE",
    "check_mel",
    "check_mel_frames",
    "check_mel_shape",
    "open_source",
    "read_npy_mel",
    "resolve_speaker",
]

# Natural-log mel magnitudes of real audio lie within a few tens of zero; values far beyond
# this overflow the models' float32 arithmetic.
MAX_MEL_MAGNITUDE = 1e3
TRANSPOSE_HINT = "; did you mean the transpose?"


def check_mel_shape(
    shape: Sequence[int], n_mels: int, name: str = "the mel", frames_first: bool = False
) -> None:
    """Raise unless `shape` is 2-D with n_mels bands on the expected axis.

    Args:
        shape (Sequence[int]): The shape given.
        n_mels (int): Mel bands the model takes.
        name (str): What the mel is called in the message (a file name, "mel.shape").
        frames_first (bool): The layout expected is (frames, n_mels), not (n_mels, frames).

    Raises:
        AudioError: naming the layout expected; asking about the transpose when that fits.
    """
    layout = "(frames, n_mels)" if frames_first else "(n_mels, frames)"
    shape = tuple(int(size) for size in shape)
    if len(shape) != 2:
        raise AudioError(f"{name}: a mel must be 2-D {layout}, got shape {shape}")
    bands, frames = (shape[1], shape[0]) if frames_first else shape
    if bands != n_mels:
        hint = TRANSPOSE_HINT if frames == n_mels else ""
        raise AudioError(
            f"{name}: wrong number of mel bands: expected n_mels={n_mels}, got {bands} "
            f"(shape {shape}, read as {layout}){hint}"
        )


def check_mel_frames(frames: int, max_frames: int | None = None) -> None:
    """Raise unless 1 <= frames <= max_frames (InputTooLongError past the limit)."""
    if frames <= 0:
        raise AudioError(f"the mel has {frames} frames; send at least one")
    if max_frames is not None and frames > max_frames:
        raise InputTooLongError(f"the mel has {frames} frames; at most {max_frames} are accepted")


def check_mel(
    mel: torch.Tensor, n_mels: int, max_frames: int | None = None, name: str = "the mel"
) -> torch.Tensor:
    """Check a mel (n_mels, frames): its shape, length and values; return it unchanged.

    Raises:
        AudioError: for a wrong shape, no frames, NaN or Inf, or values beyond
            +-MAX_MEL_MAGNITUDE (not natural-log magnitudes); InputTooLongError past max_frames.
    """
    check_mel_shape(mel.shape, n_mels, name)
    check_mel_frames(mel.shape[1], max_frames)
    if not torch.isfinite(mel).all():
        raise AudioError(f"{name}: contains NaN or infinite values")
    largest = mel.abs().max().item()
    if largest > MAX_MEL_MAGNITUDE:
        raise AudioError(
            f"mel values must be natural-log magnitudes within +-{MAX_MEL_MAGNITUDE:g}; "
            f"{name} has {largest:g}"
        )
    return mel


def open_source(
    source: str | Path | bytes, name: str | None, default: str
) -> tuple[str, Path | io.BytesIO]:
    """What a reader should open for `source` (a path, or a file's bytes), and its name.

    Args:
        source (str | Path | bytes): A path, or the file's contents.
        name (str | None): What to call it in messages; the path (or `default`) if None.
        default (str): The name of bytes given without one.

    Raises:
        AudioError: for empty bytes, or a path that is not a file.
    """
    if isinstance(source, bytes | bytearray):
        name = name or default
        if not source:
            raise AudioError(f"{name}: empty file")
        return name, io.BytesIO(source)
    name = name or str(source)
    if not Path(source).is_file():
        raise AudioError(f"{name}: no such file")
    return name, Path(source)


def read_npy_mel(
    source: str | Path | bytes,
    n_mels: int,
    max_frames: int | None = None,
    name: str | None = None,
) -> torch.Tensor:
    """A mel (n_mels, frames) from a .npy file, or from the bytes of one; checked.

    Args:
        source (str | Path | bytes): A path, or the file's contents.
        n_mels (int): Mel bands the model takes.
        max_frames (int | None): Most frames accepted; None for no limit.
        name (str | None): What to call it in messages; the path by default.

    Returns:
        Tensor: float32 mel (n_mels, frames).

    Raises:
        UnreadableInputError: not a .npy file (or a pickled one); AudioError: a missing
            file, or an array that is not a valid mel (see `check_mel`).
    """
    name, readable = open_source(source, name, "the .npy body")
    try:
        array = np.load(readable, allow_pickle=False)
    except Exception as error:  # numpy raises several types for damaged files
        raise UnreadableInputError(f"{name}: not a readable .npy array ({error})") from None
    check_mel_shape(array.shape, n_mels, name)
    check_mel_frames(array.shape[1], max_frames)
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"{name}: the array must hold floats, got {array.dtype}")
    mel = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return check_mel(mel, n_mels, max_frames, name)


def resolve_speaker(value: int | str | None, speakers: Sequence[str]) -> int | None:
    """A speaker id from an id (int, or digits) or a name, checked against `speakers`.

    None or "" means no speaker. Raises AudioError naming the valid speakers.
    """
    if value is None or value == "":
        return None
    if not speakers:
        raise AudioError("this model has a single speaker; leave the speaker out")
    if isinstance(value, str) and value in speakers:
        return list(speakers).index(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < len(speakers):
        return value
    known = ", ".join(f"{index}={name}" for index, name in enumerate(speakers))
    raise AudioError(f"unknown speaker {value!r}; valid speakers (id=name): {known}")
