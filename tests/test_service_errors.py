"""Bad input gets a clear 4xx JSON error, and the next valid request still succeeds."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from service_fixtures import (
    mel_json,
    random_mel,
    running_client,
    save_served_checkpoint,
    service_settings,
)

from service.app import create_app

pytestmark = pytest.mark.timeout(60)

MAX_FRAMES = 32
MAX_BODY_BYTES = 20_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")


@pytest.fixture(scope="module")
def app(checkpoint: Path):
    settings = service_settings(checkpoint, max_frames=MAX_FRAMES, max_body_bytes=MAX_BODY_BYTES)
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app):
    with running_client(app) as client:
        yield client


def assert_still_serving(client) -> None:
    """A valid request right after a bad one succeeds."""
    body = {"mel": mel_json(random_mel(1)), "temperature": 0}
    response = client.post("/v1/vocode", json=body)
    assert response.status_code == 200, response.text
    assert len(response.content) == 44 + 2 * 16


def b64(values: np.ndarray) -> str:
    return base64.b64encode(values.astype("<f4").tobytes()).decode()


def npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


GOOD_ROWS = mel_json(random_mel(2))
NAN_ROWS_TEXT = json.dumps({"mel": GOOD_ROWS}).replace(str(GOOD_ROWS[0][3]), "NaN", 1)
INF_MEL = np.full((8, 2), np.inf, dtype=np.float32)
JSON = {"content-type": "application/json"}
NPY = {"content-type": "application/x-npy"}

BAD_VOCODE_REQUESTS = {
    "wrong n_mels (json)": (
        dict(json={"mel": [[0.0] * 7] * 2}),
        422,
        ["expected n_mels=8", "got 7"],
    ),
    "wrong n_mels (b64)": (
        dict(json={"mel": {"b64": b64(np.zeros((6, 2))), "shape": [6, 2]}}),
        422,
        ["expected n_mels=8", "got 6"],
    ),
    "wrong n_mels (npy)": (dict(content=npy(np.zeros((9, 2))), headers=NPY), 422, ["got 9"]),
    "transposed (json rows are frames x n_mels)": (
        dict(json={"mel": [[0.0] * 2] * 8}),
        422,
        ["(frames, n_mels)", "did you mean the transpose?"],
    ),
    "transposed (b64 shape is [n_mels, frames])": (
        dict(json={"mel": {"b64": b64(np.zeros((2, 8))), "shape": [2, 8]}}),
        422,
        ["(n_mels, frames)", "did you mean the transpose?"],
    ),
    "transposed (npy is n_mels x frames)": (
        dict(content=npy(np.zeros((2, 8))), headers=NPY),
        422,
        ["(n_mels, frames)", "did you mean the transpose?"],
    ),
    "NaN (json)": (dict(content=NAN_ROWS_TEXT, headers=JSON), 422, ["NaN"]),
    "Inf (b64)": (dict(json={"mel": {"b64": b64(INF_MEL), "shape": [8, 2]}}), 422, ["infinite"]),
    "Inf (npy)": (dict(content=npy(INF_MEL), headers=NPY), 422, ["infinite"]),
    "zero frames (json)": (dict(json={"mel": []}), 422, ["0 frames"]),
    "zero frames (b64)": (dict(json={"mel": {"b64": "", "shape": [8, 0]}}), 422, ["0 frames"]),
    "zero frames (npy)": (dict(content=npy(np.zeros((8, 0))), headers=NPY), 422, ["0 frames"]),
    "too many frames (json)": (
        dict(json={"mel": [[0.0] * 8] * (MAX_FRAMES + 1)}),
        413,
        ["at most 32"],
    ),
    "too many frames (npy)": (
        dict(content=npy(np.zeros((8, MAX_FRAMES + 1))), headers=NPY),
        413,
        ["at most 32"],
    ),
    "unknown speaker name": (
        dict(json={"mel": GOOD_ROWS, "speaker": "carol"}),
        422,
        ["carol", "alice", "bob"],
    ),
    "unknown speaker id": (dict(json={"mel": GOOD_ROWS, "speaker": 2}), 422, ["0=alice, 1=bob"]),
    "unsupported format (json)": (
        dict(json={"mel": GOOD_ROWS, "format": "mp3"}),
        422,
        ["format", "wav"],
    ),
    "unsupported format (query)": (
        dict(url="/v1/vocode?format=ogg", content=npy(np.zeros((8, 2))), headers=NPY),
        422,
        ["format"],
    ),
    "flac cannot stream": (
        dict(url="/v1/vocode?stream=true", json={"mel": GOOD_ROWS, "format": "flac"}),
        422,
        ["cannot be streamed"],
    ),
    "mel values out of range": (
        dict(json={"mel": [[3e38] * 8] * 2}),
        422,
        ["within +-1000"],
    ),
    "temperature too small to sample": (
        dict(json={"mel": GOOD_ROWS, "temperature": 1e-40}),
        422,
        ["temperature must be 0 or at least"],
    ),
    "negative temperature": (
        dict(json={"mel": GOOD_ROWS, "temperature": -1}),
        422,
        ["temperature"],
    ),
    "unknown field": (dict(json={"mel": GOOD_ROWS, "volume": 11}), 422, ["volume"]),
    "invalid json": (dict(content=b'{"mel": [[1, 2', headers=JSON), 422, ["JSON"]),
    "empty body": (dict(content=b"", headers=JSON), 422, ["empty"]),
    "bad base64": (dict(json={"mel": {"b64": "%%%", "shape": [8, 1]}}), 422, ["base64"]),
    "short base64": (
        dict(json={"mel": {"b64": b64(np.zeros(8)), "shape": [8, 2]}}),
        422,
        ["needs 64"],
    ),
    "pickled npy": (
        dict(content=npy(np.array([{"a": 1}], dtype=object)), headers=NPY),
        422,
        [".npy"],
    ),
    "integer npy": (dict(content=npy(np.zeros((8, 2), np.int32)), headers=NPY), 422, ["floats"]),
    "form body": (
        dict(content=b"mel=1", headers={"content-type": "application/x-www-form-urlencoded"}),
        415,
        ["Content-Type"],
    ),
}


@pytest.mark.parametrize("case", BAD_VOCODE_REQUESTS.keys())
def test_bad_vocode_requests_get_a_clear_error(client, case):
    request, status, words = BAD_VOCODE_REQUESTS[case]
    response = client.post(request.pop("url", "/v1/vocode"), **request)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail
    assert_still_serving(client)


def wav_bytes(samples: np.ndarray, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


BAD_UPLOADS = {
    "not audio": (dict(files={"file": ("a.wav", b"<html>hello</html>" * 20)}), 415, "readable"),
    "truncated wav": (dict(files={"file": wav_bytes(np.zeros(50))[:30]}), 415, "readable"),
    "empty file": (dict(files={"file": ("a.wav", b"")}), 422, "empty"),
    "no file field": (dict(data={"format": "wav"}), 422, "file"),
    "too long": (dict(files={"file": wav_bytes(np.zeros(16 * MAX_FRAMES + 100))}), 413, "at most"),
    "unknown speaker": (
        dict(files={"file": wav_bytes(np.zeros(40))}, data={"speaker": "eve"}),
        422,
        "alice",
    ),
    "unsupported format": (
        dict(files={"file": wav_bytes(np.zeros(40))}, data={"format": "mp3"}),
        422,
        "format",
    ),
    "temperature too small to sample": (
        dict(files={"file": wav_bytes(np.zeros(40))}, data={"temperature": "1e-40"}),
        422,
        "temperature",
    ),
}


@pytest.mark.parametrize("case", BAD_UPLOADS.keys())
def test_bad_uploads_get_a_clear_error(client, case):
    request, status, word = BAD_UPLOADS[case]
    response = client.post("/v1/resynthesize", **request)
    assert response.status_code == status, response.text
    assert word in response.json()["detail"]
    assert_still_serving(client)


def test_oversized_bodies_get_413(client):
    rows = {"mel": [[0.0] * 8] * 600}  # well over MAX_BODY_BYTES as JSON
    assert len(json.dumps(rows)) > MAX_BODY_BYTES
    response = client.post("/v1/vocode", json=rows)
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    upload = client.post("/v1/resynthesize", files={"file": b"\0" * (MAX_BODY_BYTES + 1)})
    assert upload.status_code == 413
    assert_still_serving(client)


def _scope(headers: list[tuple[bytes, bytes]], path: str = "/v1/vocode") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }


def call_with_endless_body(app, headers, path: str = "/v1/vocode", prefix: bytes = b""):
    """Send the app `prefix`, then a body that never ends; return (status, chunks it read)."""
    reads = 0
    messages = []

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        body = prefix if reads == 1 and prefix else b"0" * 1000
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(app(_scope(headers, path), receive, send))
    return messages[0]["status"], reads


@pytest.mark.timeout(20)
def test_declared_oversized_body_is_refused_before_reading_any_of_it(app, client):
    headers = [(b"content-type", b"application/json"), (b"content-length", b"1000000000")]
    status, reads = call_with_endless_body(app, headers)
    assert status == 413 and reads == 0
    assert_still_serving(client)


MULTIPART_START = (
    b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"Content-Type: audio/wav\r\n\r\n"
)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("path", "content_type", "prefix"),
    [
        ("/v1/vocode", b"application/json", b""),
        ("/v1/resynthesize", b"multipart/form-data; boundary=x", MULTIPART_START),
    ],
)
def test_undeclared_body_stops_being_read_at_the_limit(app, client, path, content_type, prefix):
    headers = [(b"content-type", content_type)]
    status, reads = call_with_endless_body(app, headers, path, prefix)
    assert status == 413
    # The limit is passed within the chunk after MAX_BODY_BYTES; nothing more is read.
    assert reads <= MAX_BODY_BYTES // 1000 + 2
    assert_still_serving(client)
