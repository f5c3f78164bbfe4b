"""Every error the service returns is JSON `{"detail": "<what was wrong>"}`.

Bad input gets a 4xx that says what to fix; a full queue or a stopping service gets 503 with
Retry-After; a client that went away gets 499 (logged, never sent); anything unexpected gets
a 500 without internals, and the traceback goes to the log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service.inputs import InputError, validation_message
from service.jobs import QueueFullError, ShuttingDownError

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "BodyTimeout",
    "BodyTooLarge",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

# Status a client that went away gets logged with (nginx's "client closed request").
CLIENT_CLOSED_REQUEST = 499


class BodyTooLarge(HTTPException):
    """The request body is over the limit (an HTTPException, so body parsers pass it on)."""

    def __init__(self, limit: int, why: str = ""):
        because = f" ({why})" if why else ""
        detail = f"the request body is larger than the limit of {limit} bytes{because}"
        super().__init__(413, detail)


class BodyTimeout(HTTPException):
    """The request body did not arrive in time."""

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return _error(error.status_code, str(error.detail), error.headers)


async def _validation_error(
    request: Request, error: RequestValidationError | ValidationError
) -> JSONResponse:
    errors = (
        error.errors(include_input=False) if isinstance(error, ValidationError) else error.errors()
    )
    return _error(422, validation_message(list(errors)))


async def _input_error(request: Request, error: InputError) -> JSONResponse:
    return _error(error.status, str(error))


async def _queue_full(request: Request, error: QueueFullError) -> JSONResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.rejected.inc()
    retry_after = str(request.app.state.settings.retry_after_s)
    return _error(503, f"{error}; retry later", {"Retry-After": retry_after})


async def _shutting_down(request: Request, error: ShuttingDownError) -> JSONResponse:
    retry_after = str(request.app.state.settings.retry_after_s)
    return _error(503, f"{error}; retry later", {"Retry-After": retry_after})


async def _client_gone(request: Request, error: ClientDisconnect) -> Response:
    # RequestGuard counts it; the response is never sent.
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _error(500, "internal error; see the service log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error responses on `app`."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Options checked again when a route assembles them (e.g. form fields into a model).
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(QueueFullError, _queue_full)
    app.add_exception_handler(ShuttingDownError, _shutting_down)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _internal_error)
