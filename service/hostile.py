"""Hostile and careless clients, replayed against a service running on this machine.

Each case is one way a client can try to make the service pay for more than it asked: odd
upload sample rates, bodies cut short, half-sent requests, JSON amplification, huge headers,
endless chunked bodies, uploads without the API key, slow bodies. `wavenet bench-service
--hostile` runs them one after the other and reports, per case, what the client got, how far
the server's resident memory rose meanwhile (`process_resident_memory_bytes` of /metrics,
sampled), and whether a well-formed request sent meanwhile was served within 5 s; the tests
run them against a server in the test process. Every case is bounded in bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "Reply",
    "Target",
    "cut_short_bodies",
    "endless_chunked_body",
    "exchange",
    "half_sent_requests",
    "huge_header",
    "json_amplification",
    "multipart",
    "odd_rate_upload",
    "request_head",
    "slow_body",
    "unauthenticated_upload",
    "wav_with_rate",
]

MEGABYTE = 1 << 20
CHUNK_BYTES = 64 * 1024


@dataclass
class Reply:
    """What a raw HTTP client got back.

    Attributes:
        status (int | None): Response status; None if no response came.
        headers (dict): Response headers, names in lower case.
        body (bytes): Response body (Content-Length bytes).
        closed (bool): The server closed the connection after it.
        sent (int): Request bytes the client managed to send.
    """

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False
    sent: int = 0


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 request line and headers, ending with the blank line."""
    lines = [
        f"{method} {path} HTTP/1.1",
        "host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def exchange(
    host: str,
    port: int,
    chunks: Iterable[bytes],
    timeout_s: float = 10.0,
    hang_up: bool = False,
) -> Reply:
    """Send `chunks` (head first) until the server answers or closes, then read its answer.

    Args:
        host (str): Server address.
        port (int): Server port.
        chunks (Iterable[bytes]): The request, in pieces; sending stops at the first answer.
        timeout_s (float): Longest wait for the answer once sending stopped.
        hang_up (bool): Close the connection after the last chunk without waiting.
    """
    reader, writer = await asyncio.open_connection(host, port)
    reply = Reply()
    answered = asyncio.ensure_future(_read_reply(reader, reply))
    try:
        for chunk in chunks:
            if answered.done():
                break
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), timeout_s)
            reply.sent += len(chunk)
        if not hang_up:
            await asyncio.wait_for(asyncio.shield(answered), timeout_s)
    except (ConnectionError, TimeoutError):
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(answered), 1.0)
    finally:
        answered.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return reply


async def _read_reply(reader: asyncio.StreamReader, reply: Reply) -> None:
    """Fill `reply` with the response on `reader` (and whether the server then closed)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        reply.closed = True  # closed without an answer
        return
    status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
    reply.status = int(status_line.split()[1])
    for line in header_lines:
        name, _, value = line.partition(":")
        reply.headers[name.strip().lower()] = value.strip()
    reply.body = await reader.readexactly(int(reply.headers.get("content-length", 0)))
    try:
        reply.closed = await asyncio.wait_for(reader.read(1), 2.0) == b""
    except ConnectionError:  # a reset: closed with the client's bytes unread
        reply.closed = True
    except TimeoutError:
        pass


def wav_with_rate(rate: int, frames: int) -> bytes:
    """A mono 16-bit PCM WAV file of `frames` zeros whose header says `rate` Hz (any 32-bit
    value: the byte rate field wraps, as a careless or hostile writer would leave it)."""
    data = bytes(2 * frames)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(data)) + b"WAVE" + chunks + data


def multipart(data: bytes, boundary: str = "hostile-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body with `data` as its `file` field, and its Content-Type."""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def repeated(unit: bytes, total: int) -> Iterable[bytes]:
    """`unit` repeated to `total` bytes, in chunks of about CHUNK_BYTES."""
    piece = unit * max(1, CHUNK_BYTES // len(unit))
    for _ in range(total // len(piece)):
        yield piece


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    """`pieces` in HTTP/1.1 chunked transfer coding (never terminated: the caller stops)."""
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


@dataclass(frozen=True)
class Target:
    """The service under test: where it is, its Authorization header (if it has a key), and
    the limits that size the cases."""

    host: str
    port: int
    auth: dict[str, str]
    n_mels: int
    max_frames: int


def _head(target: Target, path: str, headers: dict[str, str], auth: bool = True) -> bytes:
    return request_head("POST", path, {**headers, **(target.auth if auth else {})})


async def odd_rate_upload(target: Target, rate: int, frames: int) -> Reply:
    """An upload whose WAV header claims `rate` Hz (e.g. 8001, 44101 or 2**31 - 1)."""
    body, content_type = multipart(wav_with_rate(rate, frames))
    headers = {"content-type": content_type, "content-length": str(len(body))}
    head = _head(target, "/v1/resynthesize?format=pcm16", headers)
    return await exchange(target.host, target.port, [head, body], timeout_s=60.0)


async def cut_short_bodies(target: Target, count: int = 10) -> list[Reply]:
    """`count` clients that announce a 100 kB JSON body, send 1 kB of it and hang up."""
    headers = {"content-type": "application/json", "content-length": "100000"}
    head = _head(target, "/v1/vocode", headers)
    partial = b'{"mel": [[' + b"1," * 495
    clients = [
        exchange(target.host, target.port, [head, partial], hang_up=True) for _ in range(count)
    ]
    return list(await asyncio.gather(*clients))


async def half_sent_requests(target: Target, count: int, hold_s: float) -> list[Reply]:
    """`count` connections that send half a request head and wait `hold_s` for an answer."""
    partial = b"POST /v1/vocode HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    clients = [
        exchange(target.host, target.port, [partial], timeout_s=hold_s) for _ in range(count)
    ]
    return list(await asyncio.gather(*clients))


async def json_amplification(target: Target, megabytes: int = 16, declared: bool = True) -> Reply:
    """A JSON mel of one-value rows, `megabytes` long, with or without a Content-Length."""
    prefix, rows = b'{"mel": [', repeated(b"[1],", megabytes * MEGABYTE)
    if declared:
        length = len(prefix) + megabytes * MEGABYTE // CHUNK_BYTES * CHUNK_BYTES
        headers = {"content-type": "application/json", "content-length": str(length)}
        return await exchange(
            target.host, target.port, [_head(target, "/v1/vocode", headers), prefix, *rows]
        )
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    body = chunked([prefix, *rows])
    return await exchange(target.host, target.port, [_head(target, "/v1/vocode", headers), *body])


async def huge_header(target: Target, megabytes: int = 64) -> Reply:
    """A request whose one header is `megabytes` long."""
    start = b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: "
    return await exchange(target.host, target.port, [start, *repeated(b"a", megabytes * MEGABYTE)])


async def endless_chunked_body(target: Target, megabytes: int = 64) -> Reply:
    """A chunked body that would go on for `megabytes` (the server should stop it early)."""
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}
    body = chunked(repeated(b" ", megabytes * MEGABYTE))
    return await exchange(target.host, target.port, [_head(target, "/v1/vocode", headers), *body])


async def unauthenticated_upload(target: Target, megabytes: int = 8) -> Reply:
    """A `megabytes` upload without the API key."""
    body, content_type = multipart(wav_with_rate(16000, megabytes * MEGABYTE // 2))
    headers = {"content-type": content_type, "content-length": str(len(body))}
    head = _head(target, "/v1/resynthesize", headers, auth=False)
    pieces = (body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES))
    return await exchange(target.host, target.port, [head, *pieces])


async def slow_body(target: Target, hold_s: float) -> Reply:
    """A client that sends 8 bytes of a 1,000-byte body, then nothing for `hold_s` seconds."""
    headers = {"content-type": "application/json", "content-length": "1000"}
    head = _head(target, "/v1/vocode", headers)
    return await exchange(target.host, target.port, [head, b'{"mel": '], timeout_s=hold_s)
