"""A real uvicorn server: a full queue answers 503 at once, and gone clients' work is dropped."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from service_fixtures import (
    mel_json,
    metric_value,
    random_mel,
    running_server,
    save_served_checkpoint,
    service_settings,
    wait_until,
)

from service.app import create_app

LONG_FRAMES = 400  # minutes of work for this model: it must be cut short to finish


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return save_served_checkpoint(tmp_path / "tiny")


def body(frames: int, seed: int = 0) -> dict:
    return {"mel": mel_json(random_mel(frames, seed)), "temperature": 0, "format": "pcm16"}


def metric(client: httpx.Client, name: str) -> float:
    return metric_value(client.get("/metrics").text, name)


def give_up_while_queued(url: str) -> None:
    """A client that leaves after a second, while its request still waits in the queue."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/vocode", json=body(2), timeout=1.0)


@pytest.mark.timeout(60)
def test_full_queue_gets_503_and_gone_clients_are_dropped(checkpoint):
    settings = service_settings(
        checkpoint,
        max_frames=LONG_FRAMES,
        queue_size=1,
        max_batch_size=1,
        batch_wait_ms=0,
        retry_after_s=3,
    )
    app = create_app(settings)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, message="/readyz")
        # 1. A long stream keeps the worker busy.
        with client.stream("POST", "/v1/vocode?stream=true", json=body(LONG_FRAMES)) as long:
            assert long.status_code == 200
            # Keep the iterator: dropping it would close the stream right away.
            received = long.iter_bytes()
            assert len(next(received)) > 0
            # 2. A request waits in the queue, and its client gives up.
            waiter = threading.Thread(target=give_up_while_queued, args=(url,))
            waiter.start()
            wait_until(lambda: app.state.runtime.worker.depth == 1, message="a queued request")
            # 3. The queue is full: refused at once with Retry-After, not left hanging.
            refused = client.post("/v1/vocode", json=body(2), timeout=5)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "3"
            assert "queue is full" in refused.json()["detail"]
            waiter.join(10)
        # 4. Closing the stream drops the long job, the gone client's job is skipped, and
        # the worker is free again.
        cancelled = "wavenet_cancelled_requests_total"
        wait_until(lambda: metric(client, cancelled) == 2, timeout=20, message="2 cancelled")
        served = client.post("/v1/vocode", json=body(3))
        assert served.status_code == 200 and len(served.content) == 2 * 3 * 16
        # Only the served request's audio is counted: the long one never finished.
        seconds = "wavenet_audio_seconds_total"
        wait_until(lambda: metric(client, seconds) > 0, message="the served batch in /metrics")
        assert metric(client, seconds) == pytest.approx(3 * 16 / 8000)
        assert metric(client, "wavenet_rejected_requests_total") == 1
