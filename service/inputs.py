"""Turning request inputs into what the model takes, with a clear error for each problem.

The mel bodies of POST /v1/vocode are read in `service.vocode_body`; an upload to
POST /v1/resynthesize here, by the one audio decoder with the service's limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from service.audio_codec import AudioFormat
from service.schemas import SynthesisQuery
from wavenet.audio import decode_audio
from wavenet.errors import AudioError, InputTooLongError, UnreadableInputError
from wavenet.features import FeatureSpec
from wavenet.inputs import check_mel, resolve_speaker
from wavenet.synthesis_f0 import SynthesisF0

__all__ = [
    "InputError",
    "Synthesis",
    "checked_synthesis",
    "reported_as_input_errors",
    "upload_synthesis",
    "validation_message",
]

MEL_ONLY = "this model is mel-only (not pitch-aware)"
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
        f0 (Tensor | None): F0 (frames,) in Hz before the shift, sent or tracked; None: to
            be predicted from the mel (pitch-aware model), or none at all (mel-only).
        pitch_shift (float): Semitones to shift F0 by.
        f0_source (str | None): "request", "predictor" or "tracker"; None when mel-only.
    """

    mel: torch.Tensor
    speaker: int | None
    format: AudioFormat
    temperature: float
    seed: int | None
    stream: bool
    f0: torch.Tensor | None = None
    pitch_shift: float = 0.0
    f0_source: str | None = None


def upload_synthesis(
    data: bytes,
    options: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
    rates: tuple[int, int] | None = None,
    pitch: SynthesisF0 | None = None,
) -> Synthesis:
    """A POST /v1/resynthesize request: the uploaded audio's features, with form options;
    for a pitch-aware model (`pitch`), its F0 tracked from the audio.

    `rates` are the lowest and highest sample rates an upload may have, in Hz.
    """
    max_seconds = spec.samples_for(max_frames) / spec.sample_rate
    with reported_as_input_errors(unreadable=415):
        audio = decode_audio(data, spec.sample_rate, max_seconds, rates, name=UPLOAD_NAME)
    synthesis = checked_synthesis(spec.extract(audio), options, spec, speakers, max_frames, pitch)
    if pitch is not None:
        synthesis.f0, synthesis.f0_source = pitch.track(audio), "tracker"
    return synthesis


def checked_synthesis(
    mel: torch.Tensor,
    options: SynthesisQuery,
    spec: FeatureSpec,
    speakers: list[str],
    max_frames: int,
    pitch: SynthesisF0 | None = None,
    f0: torch.Tensor | None = None,
) -> Synthesis:
    """A checked request: the mel within limits, the speaker resolved, the options kept, and
    the F0 sent (if any) checked against the model: a mel-only model (`pitch` None) takes
    neither f0 nor a pitch_shift."""
    with reported_as_input_errors():
        mel = check_mel(mel, spec.n_mels, max_frames)
        synthesis = Synthesis(
            mel=mel,
            speaker=resolve_speaker(options.speaker, speakers),
            format=options.format,
            temperature=options.temperature,
            seed=options.seed,
            stream=options.stream,
            pitch_shift=options.pitch_shift,
        )
        if pitch is None:
            if f0 is not None:
                raise InputError(f"{MEL_ONLY}: it takes no f0; leave f0 out")
            if options.pitch_shift != 0:
                raise InputError(f"{MEL_ONLY}: it cannot shift pitch; leave pitch_shift at 0")
            return synthesis
        if f0 is not None:
            synthesis.f0 = pitch.check(f0, mel.shape[-1])
        synthesis.f0_source = "predictor" if f0 is None else "request"
        return synthesis


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


def validation_message(errors: list[dict]) -> str:
    """One line from pydantic/FastAPI validation errors: 'where: what; where: what'."""
    parts = []
    for error in errors[:MAX_LISTED_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    if len(errors) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"
