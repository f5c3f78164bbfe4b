"""JSON bodies of the HTTP API (requests and responses)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.audio_codec import AudioFormat
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec
from wavenet.synthesis_f0 import PITCH_SHIFT_LIMIT

__all__ = [
    "MAX_SEED",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "ErrorBody",
    "F0Track",
    "Health",
    "MelArray",
    "ModelInfo",
    "ModelList",
    "PitchInfo",
    "PitchShift",
    "SynthesisQuery",
    "Temperature",
    "VocodeRequest",
]

MAX_TEMPERATURE = 10.0
# Below this, logits divided by the temperature overflow float32 and sampling breaks down;
# such a temperature means "deterministic", which 0 says exactly.
MIN_TEMPERATURE = 1e-3
MAX_SEED = 2**63 - 1


def _check_temperature(value: float) -> float:
    if 0 < value < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 or at least {MIN_TEMPERATURE}")
    return value


Temperature = Annotated[
    float,
    Field(ge=0, le=MAX_TEMPERATURE, description="Sampling temperature; 0 is deterministic."),
    AfterValidator(_check_temperature),
]


PitchShift = Annotated[
    float,
    Field(
        ge=-PITCH_SHIFT_LIMIT,
        le=PITCH_SHIFT_LIMIT,
        allow_inf_nan=False,
        description="Semitones to shift F0 by (pitch-aware models): F0 is scaled by "
        "2^(s/12), clamped to the model's f0_max; the mel, and so the formants, are kept.",
    ),
]
F0_QUERY = (
    "F0 per mel frame for a .npy body: base64 (standard or URL-safe) of little-endian "
    "float32 values in Hz, one per frame, 0 = unvoiced (pitch-aware models)."
)


class MelArray(BaseModel):
    """A mel as base64 of little-endian float32 values in C order, laid out [n_mels, frames]."""

    model_config = ConfigDict(extra="forbid")

    b64: str = Field(
        description="base64 of n_mels * frames little-endian float32 values, band by band "
        "(C order of an [n_mels, frames] array, as numpy's `mel.astype('<f4').tobytes()`)."
    )
    shape: tuple[int, int] = Field(
        description="[n_mels, frames]: bands first, the model's own layout (the transpose of "
        "the JSON rows)."
    )


class VocodeRequest(BaseModel):
    """Features to vocode, with options. Options left out fall back to the query string."""

    model_config = ConfigDict(extra="forbid")

    mel: list[list[float]] | MelArray = Field(
        description="Log-mel frames, in one of two layouts. A list of rows: frames x n_mels, "
        "one row per frame holding its n_mels values (a spectrogram written row by row). "
        "Or {b64, shape}: n_mels x frames, bands first. A mel in the other layout gets a "
        "422 asking whether you meant the transpose."
    )
    speaker: int | str | None = Field(
        None, description="Speaker id or name (multi-speaker models)."
    )
    format: AudioFormat | None = Field(None, description="Output format (default wav).")
    temperature: Temperature | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed for reproducible sampling.")
    f0: list[float] | str | None = Field(
        None,
        description="F0 per mel frame, in Hz, 0 = unvoiced (pitch-aware models only): a list "
        "of one number per frame, or base64 of little-endian float32 values. Left out, the "
        "pitch predictor supplies it from the mel.",
    )
    pitch_shift: PitchShift | None = None


class SynthesisQuery(BaseModel):
    """Query options of the synthesis routes (for a JSON body, the body's own win)."""

    speaker: str | None = Field(None, description="Speaker id or name (multi-speaker models).")
    format: AudioFormat = Field("wav", description="Output format.")
    temperature: Temperature = 1.0
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed for reproducible sampling.")
    stream: bool = Field(False, description="Send the audio in chunks as it is made.")
    pitch_shift: PitchShift = 0.0
    f0: str | None = Field(None, description=F0_QUERY)


class PitchInfo(BaseModel):
    """How a pitch-aware model gets its F0."""

    f0_sources: dict[str, str] = Field(
        description="Where each route's F0 comes from: vocode 'request or predictor' (the f0 "
        "sent, else predicted from the mel), resynthesize 'tracker' (tracked from the upload)."
    )
    f0_max: float = Field(
        description="Highest F0 the model takes, Hz (its excitation.f0_max): a sent f0 above "
        "it gets 422; a shifted, tracked or predicted F0 is clamped to it."
    )
    pitch_shift_range: tuple[float, float] = Field(description="Semitones pitch_shift accepts.")
    predictor: str = Field(description="Name of the pitch predictor's checkpoint directory.")
    tracker: PitchSpec = Field(description="The pitch tracker's settings (F0 of uploads).")


class ModelInfo(BaseModel):
    """The served model."""

    name: str = Field(description="Name of the checkpoint directory.")
    kind: str = Field(description="student or teacher.")
    sample_rate: int = Field(description="Sample rate of the audio it makes, in Hz.")
    spec: FeatureSpec = Field(description="How audio becomes the features it takes.")
    speakers: list[str] = Field(description="Speaker names; the index is the id.")
    receptive_field: int = Field(description="Past samples one output sample depends on.")
    parameters: int = Field(description="Number of parameters.")
    device: str = Field(description="Device it runs on.")
    max_frames: int = Field(description="Most mel frames one request may ask for.")
    formats: list[str] = Field(description="Output formats.")
    pitch_aware: bool = Field(description="Whether the model takes F0 (f0, pitch_shift).")
    pitch: PitchInfo | None = Field(description="F0 sources and range; null when mel-only.")


class ModelList(BaseModel):
    """Models this service serves."""

    models: list[ModelInfo]


class F0Track(BaseModel):
    """The F0 a synthesis route would use for the same request."""

    f0: list[float] = Field(description="F0 per mel frame after pitch_shift, Hz, 0 = unvoiced.")
    unshifted: list[float] = Field(description="The same F0 before pitch_shift.")
    source: Literal["request", "predictor", "tracker"] = Field(description="Where it came from.")
    pitch_shift: float = Field(description="Semitones applied.")
    frame_seconds: float = Field(description="Seconds between frames (hop / sample rate).")


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: str | None = None


class ErrorBody(BaseModel):
    """Every error response: a message that says what was wrong."""

    detail: str
