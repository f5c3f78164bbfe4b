"""The service under hostile clients, each against a real uvicorn server on loopback.

One test per way a client could once make the service pay for more than it asked. Each
asserts what that client gets, that a well-formed request sent meanwhile is served within
5 s, and, where memory was the problem, the peak resident growth of this process (which runs
the server) while the client ran.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from service_fixtures import (
    free_port,
    metric_value,
    running_server,
    save_served_checkpoint,
    service_settings,
)

from service import hostile
from service.app import create_app
from service.server import uvicorn_config
from service.settings import Settings
from service.vocode_body import body_limit

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "models/default/student"
MEMORY_BOUND_MB = 300
SERVED_WITHIN_S = 5.0
# A well-formed request for the shipped student (80 mels): two frames, deterministic.
VALID = {"mel": [[-5.0] * 80] * 2, "temperature": 0, "format": "pcm16"}


def student_settings(**overrides) -> Settings:
    """The shipped student with the default limits, except short timeouts for the tests."""
    fields = dict(header_timeout_s=1.0, body_timeout_s=1.0, limit_concurrency=48)
    return service_settings(STUDENT, max_frames=2000, **{**fields, **overrides})


@pytest.fixture(scope="module")
def server():
    """(base URL, hostile.Target) of the shipped student served with default limits."""
    app = create_app(student_settings())
    with running_server(app) as url:
        wait_ready(url)
        yield url, target(url)


def target(url: str, auth: dict[str, str] | None = None) -> hostile.Target:
    parts = urlsplit(url)
    return hostile.Target(parts.hostname, parts.port, auth or {}, n_mels=80, max_frames=2000)


def wait_ready(url: str, headers: dict | None = None) -> None:
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready"
        time.sleep(0.05)


def resident_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def peak_growth_mb(run) -> tuple[object, float]:
    """What `run()` returns, and how far this process's peak resident memory rose above its
    resident memory before (the kernel's high-water mark, reset first)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = resident_mb("VmRSS")
    result = run()
    return result, resident_mb("VmHWM") - before


async def valid_request(url: str, headers: dict | None = None, delay_s: float = 0.3):
    """Status and seconds of a well-formed request sent `delay_s` into a hostile case."""
    await asyncio.sleep(delay_s)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=SERVED_WITHIN_S) as client:
        response = await client.post("/v1/vocode", json=VALID, headers=headers)
    return response.status_code, time.monotonic() - started


def while_hostile(url: str, case: Awaitable, headers: dict | None = None):
    """Run the hostile `case` and a valid request beside it; assert the valid one was served
    in time; return what the case returned."""

    async def both():
        return await asyncio.gather(case, valid_request(url, headers))

    result, (status, seconds) = asyncio.run(both())
    assert status == 200 and seconds < SERVED_WITHIN_S, (status, seconds)
    return result


def server_errors(url: str) -> float:
    """Responses with a 5xx status so far, by the HTTP metrics; /readyz's 503s while the
    model warms up are its answer, not an error."""
    text = httpx.get(f"{url}/metrics").text
    rows = [line for line in text.splitlines() if line.startswith("http_requests_total{")]
    errors = [line for line in rows if 'status="5xx"' in line and 'handler="/readyz"' not in line]
    return sum(float(line.split()[-1]) for line in errors)


def test_upload_rates_cost_what_their_duration_does(server):
    url, service = server
    for rate, frames in [(8001, 8000), (44101, 4410)]:  # 16 kB at 8001 Hz; 0.1 s at 44101 Hz
        case = hostile.odd_rate_upload(service, rate, frames)
        reply, growth = peak_growth_mb(lambda case=case: while_hostile(url, case))
        assert reply.status == 200, reply.body
        assert int(reply.headers["x-sample-rate"]) == 16000
        assert growth < MEMORY_BOUND_MB, f"{rate} Hz: {growth:.0f} MB"
    reply = while_hostile(url, hostile.odd_rate_upload(service, 2**31 - 1, 100))
    assert reply.status == 422
    assert "2147483647 Hz is not accepted; send 4000 to 192000 Hz" in reply.body.decode()
    assert server_errors(url) == 0


def test_clients_that_hang_up_mid_body_are_counted_not_errors(server, capfd, caplog):
    url, service = server
    cancelled = "wavenet_cancelled_requests_total"
    before = metric_value(httpx.get(f"{url}/metrics").text, cancelled)
    replies = while_hostile(url, hostile.cut_short_bodies(service, count=10))
    assert all(reply.status is None for reply in replies)
    deadline = time.monotonic() + 5
    while metric_value(httpx.get(f"{url}/metrics").text, cancelled) < before + 10:
        assert time.monotonic() < deadline, "the hang-ups were not counted"
        time.sleep(0.05)
    assert server_errors(url) == 0
    assert "Traceback" not in capfd.readouterr().err  # uvicorn's log
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_half_sent_requests_are_closed_and_lock_nobody_out(server):
    url, service = server
    # More than the connection limit (48): the oldest are closed for newer clients, the
    # rest get 408 after the head timeout (1 s); none is still open after 3 s.
    replies = while_hostile(url, hostile.half_sent_requests(service, count=120, hold_s=3.0))
    assert all(reply.closed for reply in replies)
    timed_out = [reply for reply in replies if reply.status == 408]
    assert 0 < len(timed_out) <= 48
    assert "did not arrive within 1 s" in timed_out[0].body.decode()
    assert server_errors(url) == 0


def test_connections_over_the_limit_get_503_when_every_one_is_busy():
    settings = student_settings(limit_concurrency=2, body_timeout_s=2.0)
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        service = target(url)

        async def two_busy_then_one_more():
            busy = [hostile.slow_body(service, hold_s=4.0) for _ in range(2)]
            started = asyncio.gather(*busy)
            await asyncio.sleep(0.5)  # both connections are sending their bodies
            head = hostile.request_head("GET", "/livez", {})
            refused = await hostile.exchange(service.host, service.port, [head])
            return refused, await started

        refused, busy = asyncio.run(two_busy_then_one_more())
    assert refused.status == 503 and refused.closed
    assert refused.headers["retry-after"] == "1"
    assert b"too many connections" in refused.body
    assert [reply.status for reply in busy] == [408, 408]


def test_slow_bodies_get_408_and_the_connection_closes(server):
    url, service = server
    reply = while_hostile(url, hostile.slow_body(service, hold_s=5.0))
    assert reply.status == 408 and reply.closed
    assert reply.headers["connection"] == "close"
    assert "did not arrive within 1 s" in reply.body.decode()


def test_json_amplification_is_refused_before_parsing(server):
    url, service = server
    declared, growth = peak_growth_mb(
        lambda: while_hostile(url, hostile.json_amplification(service, 16))
    )
    # Over the service-wide limit (16 MiB): refused on its Content-Length.
    assert declared.status == 413 and declared.closed and declared.sent < 16 << 20
    assert "larger than the limit of 16777216 bytes" in declared.body.decode()
    assert growth < MEMORY_BOUND_MB
    # Under it, but over what a mel of 2000 x 80 values needs as JSON: answered on the head
    # alone, before a byte of the body was sent.
    headers = {"content-type": "application/json", "content-length": str(8 << 20)}
    head = hostile.request_head("POST", "/v1/vocode", headers)
    reply = asyncio.run(hostile.exchange(service.host, service.port, [head]))
    assert reply.status == 413 and reply.closed
    (model,) = httpx.get(f"{url}/v1/models").json()["models"]
    limit, why = body_limit("json", 80, 2000, f0=model["pitch_aware"])
    assert limit < 8 << 20 and f"{limit} bytes ({why})" in reply.body.decode()

    async def four_chunked():
        cases = [hostile.json_amplification(service, 16, declared=False) for _ in range(4)]
        return await asyncio.gather(*cases)

    replies, growth = peak_growth_mb(lambda: while_hostile(url, four_chunked()))
    assert [reply.status for reply in replies] == [413] * 4
    assert growth < MEMORY_BOUND_MB
    assert server_errors(url) == 0


def test_many_small_json_values_within_the_byte_limit_are_refused_unparsed(server):
    url, _ = server
    body = b'{"mel": [' + b"[1]," * 1_000_000 + b"[1]]}"  # 4 MB: under the byte limit
    response, growth = peak_growth_mb(
        lambda: httpx.post(
            f"{url}/v1/vocode", content=body, headers={"content-type": "application/json"}
        )
    )
    assert response.status_code == 413
    assert "more values than a mel of at most 2000 frames" in response.json()["detail"]
    assert growth < MEMORY_BOUND_MB


def test_huge_headers_get_431(server):
    url, service = server
    reply = while_hostile(url, hostile.huge_header(service, megabytes=64))
    # Of 64 MB, the client could send little more than the server's lingering close drops.
    assert reply.status == 431 and reply.closed and reply.sent < 32 << 20
    assert "request head is larger than the limit of 16384 bytes" in reply.body.decode()
    assert server_errors(url) == 0


def test_oversized_chunked_body_gets_413_and_the_server_stops_reading(server):
    url, service = server
    reply = while_hostile(url, hostile.endless_chunked_body(service, megabytes=64))
    assert reply.status == 413 and reply.headers["connection"] == "close" and reply.closed
    # Of 64 MB: the 5 MB limit, what the lingering close drops, and the socket buffers.
    assert reply.sent < 32 << 20
    assert server_errors(url) == 0


def test_unauthenticated_uploads_are_refused_before_their_body_is_read():
    settings = student_settings(api_key="s3cret")
    auth = {"authorization": "Bearer s3cret"}
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        reply = while_hostile(url, hostile.unauthenticated_upload(target(url), 8), auth)
        assert reply.status == 401 and reply.closed
        assert reply.headers["www-authenticate"] == "Bearer"
        # Answered on the head alone, before a byte of the body was sent.
        headers = {"content-type": "multipart/form-data; boundary=x", "content-length": "8000000"}
        head = hostile.request_head("POST", "/v1/resynthesize", headers)
        early = asyncio.run(hostile.exchange("127.0.0.1", urlsplit(url).port, [head]))
        assert early.status == 401 and early.closed
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers=auth).status_code == 200


def test_the_teacher_is_served_only_within_its_own_frame_limit(tmp_path):
    checkpoint = save_served_checkpoint(tmp_path / "teacher")
    settings = service_settings(checkpoint, max_frames=2000, teacher_max_frames=4)
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        (model,) = httpx.get(f"{url}/v1/models").json()["models"]
        assert model["kind"] == "teacher" and model["max_frames"] == 4
        long = httpx.post(f"{url}/v1/vocode", json={"mel": [[-5.0] * 8] * 5})
        assert long.status_code == 413
        assert "at most 4" in long.json()["detail"]
        assert httpx.post(f"{url}/v1/vocode", json={"mel": [[-5.0] * 8] * 4}).status_code == 200


async def wait_then_stop(url: str, app, server: uvicorn.Server) -> httpx.Response:
    """A request that waits in the queue while the server is told to stop (as on SIGTERM)."""
    async with httpx.AsyncClient(base_url=url, timeout=8) as client:
        waiting = asyncio.ensure_future(client.post("/v1/vocode", json={"mel": [[-5.0] * 8] * 2}))
        while app.state.runtime.worker.depth == 0:
            await asyncio.sleep(0.01)
        server.should_exit = True
        return await waiting


def test_requests_cut_off_by_the_grace_period_get_a_json_503(tmp_path):
    checkpoint = save_served_checkpoint(tmp_path / "teacher")
    settings = service_settings(
        checkpoint, max_frames=400, max_batch_size=1, batch_wait_ms=0, graceful_shutdown_s=0.5
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    long = {"mel": [[-5.0] * 8] * 400, "format": "pcm16", "temperature": 0}
    try:
        wait_ready(url)
        # A long stream keeps the worker busy, so the next request waits in the queue.
        with (
            httpx.Client(base_url=url, timeout=20) as client,
            client.stream("POST", "/v1/vocode?stream=true", json=long) as stream,
        ):
            received = stream.iter_bytes()  # kept: dropping it closes the stream
            assert next(received)
            cut_off = asyncio.run(wait_then_stop(url, app, server))
    finally:
        server.should_exit = True
        thread.join(20)
    assert cut_off.status_code == 503
    assert cut_off.headers["retry-after"] == "1"
    assert cut_off.json() == {"detail": "the service is shutting down"}
