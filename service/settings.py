"""Service settings, read from `WAVENET_*` environment variables (or a `.env` file).

`settings_error` turns a bad value into one line that names the variable, for `wavenet serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ENV_PREFIX", "Settings", "settings_error"]

ENV_PREFIX = "WAVENET_"


class Settings(BaseSettings):
    """Everything an operator can configure, e.g. `WAVENET_MAX_FRAMES=2000`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    model: Path = Field(
        Path("models/default/student"), description="Checkpoint directory to serve."
    )
    pitch_model: Path | None = Field(
        None,
        description="Pitch predictor of a pitch-aware model: the F0 of /v1/vocode requests "
        "sent without f0. Unset: the `pitch` folder beside WAVENET_MODEL (models/default/pitch "
        "for the default model). A pitch-aware model without a loadable one refuses to start; "
        "a mel-only model ignores it.",
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto takes CUDA when present; cuda without a GPU refuses to start."
    )
    half_precision: bool = Field(
        True, description="fp16 autocast for model calls on CUDA (ignored on CPU)."
    )
    torch_threads: int = Field(
        0, ge=0, description="CPU threads for torch; 0 keeps torch's default."
    )
    max_frames: int = Field(
        2000, gt=0, description="Most mel frames one request may ask for (413 beyond)."
    )
    teacher_max_frames: int = Field(
        32,
        gt=0,
        description="Most mel frames per request when the model is a teacher, which makes "
        "one sample at a time (about 1 s of CPU per frame for the default teacher).",
    )
    upload_min_rate_hz: int = Field(
        4000, gt=0, description="Lowest sample rate of an upload to /v1/resynthesize (422 below)."
    )
    upload_max_rate_hz: int = Field(
        192000, gt=0, description="Highest sample rate of an upload (422 above)."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted (413 beyond)."
    )
    max_batch_size: int = Field(8, gt=0, description="Most requests run together in one batch.")
    batch_wait_ms: float = Field(
        5.0, ge=0, description="How long the worker waits for more requests to fill a batch."
    )
    queue_size: int = Field(
        64, gt=0, description="Requests that may wait for the worker; beyond it 503."
    )
    retry_after_s: int = Field(
        1,
        ge=0,
        description="Retry-After of a 503 (a full queue, too many connections, shutting down).",
    )
    stream_chunk_frames: int = Field(
        16, gt=0, description="Frames of audio in each streamed chunk."
    )
    warmup_frames: int = Field(
        8, gt=0, description="Frames of the warm-up batch run before /readyz says ready."
    )
    api_key: SecretStr | None = Field(
        None, description="When set, /v1 routes need `Authorization: Bearer <key>`."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, comma-separated; none: off."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the service and of uvicorn."
    )
    graceful_shutdown_s: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM, seconds to let requests in flight finish before closing them.",
    )
    limit_concurrency: int = Field(
        512,
        gt=0,
        description="Most connections open at once; a new one first closes the oldest that "
        "has not sent a complete request head, else it gets 503.",
    )
    keep_alive_s: int = Field(
        5, gt=0, description="Seconds an idle keep-alive connection stays open."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Seconds a client has to send a whole request head (408 after)."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a client has to send a whole request body (408 after)."
    )
    max_header_bytes: int = Field(
        16384, ge=1024, description="Largest request head (request line and headers; 431 beyond)."
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port only (not on the API port); unset: on the API.",
    )
    docs: bool = Field(True, description="Serve /docs, /redoc and /openapi.json.")

    @field_validator("api_key")
    @classmethod
    def _refuse_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty; unset it to serve without a key, or set a key")
        return value

    @model_validator(mode="after")
    def _check_rates(self) -> Settings:
        if self.upload_min_rate_hz > self.upload_max_rate_hz:
            raise ValueError(
                f"{ENV_PREFIX}UPLOAD_MIN_RATE_HZ ({self.upload_min_rate_hz}) is above "
                f"{ENV_PREFIX}UPLOAD_MAX_RATE_HZ ({self.upload_max_rate_hz})"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


def settings_error(error: ValidationError) -> str:
    """One line for invalid settings, naming each variable (and its value, unless secret)."""
    problems = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        message = problem["msg"].removeprefix("Value error, ")
        if not field:
            problems.append(message)
            continue
        variable = ENV_PREFIX + field.upper()
        given = problem.get("input")
        shown = field != "api_key" and isinstance(given, str | int | float)
        problems.append(f"{variable}={given}: {message}" if shown else f"{variable}: {message}")
    return "invalid settings: " + "; ".join(problems)
