"""Service settings, read from `WAVENET_*` environment variables (or a `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything an operator can configure, e.g. `WAVENET_MAX_FRAMES=2000`."""

    model_config = SettingsConfigDict(
        env_prefix="WAVENET_", env_file=".env", extra="ignore", frozen=True
    )

    model: Path = Field(
        Path("models/default/student"), description="Checkpoint directory to serve."
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
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with a 503 for a full queue.")
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

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
