"""What a request may cost before the app pays for it, and how it ends when its client misbehaves.

`RequestGuard` is ASGI middleware inside the HTTP metrics (so they count its answers):
- a request to /v1 without the API key gets 401 before any of its body is read;
- a declared Content-Length over the limit gets 413 at once; a body sent without a length is
  counted as it arrives and stops with 413 as soon as it passes the limit, so an oversized
  body is never held in memory; a route may read with a lower limit of its own (`read_body`);
- the whole body must arrive within `body_timeout_s` of the request head, else 408;
- a response sent before the body was read in full carries `Connection: close`, so the server
  stops reading (and discarding) the rest;
- a client that disconnects before its body is in is no server error: counted in
  `wavenet_cancelled_requests`, answered (to nobody) 499, no traceback;
- a request still running when the graceful-shutdown period ends gets a JSON 503 with
  Retry-After, as any other refusal, instead of the server's plain-text 500.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import UNAUTHORIZED, is_authorized, is_protected
from service.errors import CLIENT_CLOSED_REQUEST, BodyTimeout, BodyTooLarge
from service.metrics import ServiceMetrics
from service.settings import Settings

__all__ = ["RequestGuard", "read_body"]

CLOSE = (b"connection", b"close")


class RequestGuard:
    """ASGI middleware that enforces the limits above.

    Args:
        app (ASGIApp): The application it wraps.
        settings (Settings): The API key, body limit, body timeout and Retry-After.
        metrics (ServiceMetrics): Where client disconnects are counted.
    """

    def __init__(self, app: ASGIApp, settings: Settings, metrics: ServiceMetrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.settings)
        refusal = self._refusal(scope, exchange)
        if refusal is not None:
            await exchange.reply(refusal)
            return
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except (BodyTooLarge, BodyTimeout) as error:
            # Routes that read the body themselves let these reach here.
            if exchange.started:
                raise
            await exchange.reply(error)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the grace period is over.
            if not exchange.started:
                retry = {"Retry-After": str(self.settings.retry_after_s)}
                await exchange.reply(HTTPException(503, "the service is shutting down", retry))
        except Exception:
            if not exchange.client_gone:
                raise
            # Whatever the app made of a body cut short, its client is not there to hear it.
            if not exchange.started:
                await exchange.reply(HTTPException(CLIENT_CLOSED_REQUEST, "client went away"))
        if exchange.client_gone:
            self.metrics.job_cancelled()

    def _refusal(self, scope: Scope, exchange: _Exchange) -> HTTPException | None:
        """What to answer before the app runs, if anything."""
        headers = dict(scope.get("headers", ()))
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if is_protected(scope["path"]) and not is_authorized(authorization, self.settings.api_key):
            return HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        declared = _content_length(headers)
        if declared is not None and declared > exchange.limit:
            return BodyTooLarge(exchange.limit)
        return None


class _Exchange:
    """One request and its response as the guard sees them."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, settings: Settings):
        headers = dict(scope.get("headers", ()))
        declared = _content_length(headers)
        self._receive = receive
        self._send = send
        self.limit = settings.max_body_bytes
        self.timeout_s = settings.body_timeout_s
        self.deadline = asyncio.get_running_loop().time() + settings.body_timeout_s
        # Without Content-Length or Transfer-Encoding an HTTP/1.1 request has no body; the
        # limit and the deadline apply to whatever arrives all the same.
        self.body_expected = bool(declared) or b"transfer-encoding" in headers
        self.body_done = False
        self.received = 0
        self.client_gone = False
        self.started = False

    async def receive(self) -> Message:
        if self.body_done:
            return await self._receive()
        remaining = self.deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(), max(remaining, 0.0))
        except TimeoutError:
            raise BodyTimeout(self.timeout_s) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise BodyTooLarge(self.limit)
            self.body_done = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.client_gone = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.client_gone:
                message = {**message, "status": CLIENT_CLOSED_REQUEST}
            headers = list(message.get("headers", ()))
            if self.body_expected and not self.body_done and CLOSE not in headers:
                message = {**message, "headers": [*headers, CLOSE]}
        await self._send(message)

    async def reply(self, error: HTTPException) -> None:
        """Answer with `{"detail": ...}` and the error's status and headers."""
        body = json.dumps({"detail": error.detail}).encode()
        extra = (error.headers or {}).items()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in extra),
        ]
        start = {"type": "http.response.start", "status": error.status_code, "headers": headers}
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body})


async def read_body(request: Request, limit: int, why: str = "") -> bytes:
    """The request body, refused with 413 as soon as it is known to pass `limit` bytes.

    Args:
        request (Request): The request.
        limit (int): Most bytes accepted (below the service-wide limit, e.g. per content type).
        why (str): What the limit comes from, for the message.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, why)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, why)
        chunks.append(chunk)
    return b"".join(chunks)


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    return int(value) if value is not None and value.isdigit() else None
