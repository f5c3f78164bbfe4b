"""A request body limit that holds before the body is read.

A declared Content-Length over the limit is answered 413 at once, without reading any of the
body. A body sent without a length (chunked) is counted as it arrives, and reading stops with
413 as soon as the count passes the limit, so an oversized body is never held in memory.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """ASGI middleware: 413 for request bodies over `max_body_bytes`.

    Args:
        app (ASGIApp): The application it wraps.
        max_body_bytes (int): Largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _reject(send, BodyTooLarge(self.max_body_bytes))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as error:
            # Routes that read the body themselves let the error reach here.
            if started:
                raise
            await _reject(send, error)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject(send: Send, error: BodyTooLarge) -> None:
    body = json.dumps({"detail": error.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The unread rest of the body makes the connection unusable for another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
