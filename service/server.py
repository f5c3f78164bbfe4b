"""Serving the app with uvicorn: its limits from the settings, and an HTTP/1.1 protocol that
bounds what a client may hold before its request even starts.

uvicorn's h11 protocol, with these additions (`GuardedH11Protocol`):
- a request head (request line and headers) must be complete within `header_timeout_s` of
  the connection opening or of the previous response: 408 and close otherwise, so half-sent
  requests cannot pile up;
- a head over `max_header_bytes` gets 431 and the connection closes (h11 stops buffering at
  that size); any other malformed request gets a JSON 400, not plain text;
- at `limit_concurrency` open connections, a new one first closes the oldest connection that
  is waiting for a request head (idle keep-alive, or slow), so that they cannot lock other
  clients out; if every connection has a request in progress, the new one gets 503 with
  Retry-After and is closed;
- a connection closed while its client is still sending (a 413 or 401 before the body was
  read, a 431) closes as nginx's lingering close does: the answer goes out and the write side
  is shut, then what the client still sends is read and dropped, for at most LINGER_S seconds
  and LINGER_BYTES bytes, so that the client reads the answer instead of a reset.
It relies on uvicorn's h11 protocol class (pinned in pyproject.toml): `conn`, `cycle`,
`app`, `connections`, `send_400_response` and `on_response_complete`.
"""

from __future__ import annotations

import functools
import http
import json

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings

__all__ = ["GuardedH11Protocol", "uvicorn_config"]

# Bounds of a lingering close: seconds, and bytes read and dropped.
LINGER_S = 2.0
LINGER_BYTES = 4 << 20


class LingeringTransport:
    """A transport whose `close` lingers while the client may still be sending.

    Everything else is the wrapped transport's.
    """

    def __init__(self, transport, protocol: GuardedH11Protocol):
        self._transport = transport
        self._protocol = protocol
        self.lingering = False
        self._dropped = 0

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        sending = self._protocol.conn.their_state in (h11.SEND_BODY, h11.ERROR)
        if not sending or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        self._protocol.loop.call_later(LINGER_S, self._transport.close)

    def drop(self, data: bytes) -> None:
        """Read and drop what arrives while lingering, up to LINGER_BYTES."""
        self._dropped += len(data)
        if self._dropped > LINGER_BYTES:
            self._transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline, a head size answer and a cap on
    connections (see the module docstring).

    Args:
        header_timeout_s (float): Seconds a request head may take.
        max_header_bytes (int): Largest request head.
        max_connections (int): Most connections open at once.
        retry_after_s (int): Retry-After of the 503 for a connection over the cap.
        *args, **kwargs: What uvicorn passes to `H11Protocol`.
    """

    def __init__(
        self,
        *args,
        header_timeout_s: float,
        max_header_bytes: int,
        max_connections: int,
        retry_after_s: int,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.retry_after_s = retry_after_s
        self.opened_at = 0.0
        self.served = 0
        self._head_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self)
        self.opened_at = self.loop.time()
        if len(self.connections) > self.max_connections and not self._evict_one():
            self._reply_and_close(
                503,
                "too many connections; retry later",
                {"Retry-After": str(self.retry_after_s)},
            )
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.drop(data)
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """h11 refused what the client sent: 431 for a head over the limit, else 400."""
        buffered = len(self.conn.trailing_data[0])
        if buffered > self.max_header_bytes:
            detail = f"the request head is larger than the limit of {self.max_header_bytes} bytes"
            status = 431
        else:
            detail, status = "invalid HTTP request", 400
        self.logger.warning("%s", detail)
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = http.HTTPStatus(status).phrase.encode()
        for event in (
            h11.Response(status_code=status, headers=headers, reason=reason),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    @property
    def waiting_for_head(self) -> bool:
        """No request in progress: the connection is idle or its next head is incomplete."""
        idle_cycle = self.cycle is None or self.cycle.response_complete
        return self.conn.their_state is h11.IDLE and idle_cycle

    def _evict_one(self) -> bool:
        """Close the oldest other connection waiting for a request head; False if none."""
        waiting = [
            connection
            for connection in self.connections
            if connection is not self
            and isinstance(connection, GuardedH11Protocol)
            and connection.waiting_for_head
            and not connection.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda connection: connection.opened_at)
        oldest.transport.close()
        return True

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self.waiting_for_head:
            return
        if not self.conn.trailing_data[0]:
            # Nothing sent. Between requests, uvicorn's keep-alive timeout decides; a new
            # connection that never sends a byte is closed now.
            if self.served == 0:
                self.transport.close()
            return
        detail = f"the request head did not arrive within {self.header_timeout_s:g} s"
        self._reply_and_close(408, detail)

    def _reply_and_close(self, status: int, detail: str, headers: dict | None = None) -> None:
        """Answer a connection that has no request in progress (so h11 cannot), and close it."""
        body = json.dumps({"detail": detail}).encode()
        lines = [
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.transport.close()


def uvicorn_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for `app`, with every limit taken from `settings`."""
    protocol = functools.partial(
        GuardedH11Protocol,
        header_timeout_s=settings.header_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.limit_concurrency,
        retry_after_s=settings.retry_after_s,
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws="none",
        log_level=settings.log_level,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
