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
        worker = app.state.runtime.worker

        # 1. A long stream keeps the worker busy.
        with client.stream("POST", "/v1/vocode?stream=true", json=body(LONG_FRAMES)) as long:
            assert long.status_code == 200
            # Keep the iterator: dropping it would close the stream right away.
            received = long.iter_bytes()
            assert len(next(received)) > 0

            # 2. A request whose client gives up while it waits in the queue.
            def impatient() -> None:
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{url}/v1/vocode", json=body(2), timeout=1.0)

            waiter = threading.Thread(target=impatient)
            waiter.start()
            wait_until(lambda: worker.depth == 1, message="a queued request")

            # 3. The queue is full: refused at once with Retry-After, not left hanging.
            refused = client.post("/v1/vocode", json=body(2), timeout=5)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "3"
            assert "queue is full" in refused.json()["detail"]
            waiter.join(10)
        # 4. Closing the stream drops the long job; the queued job of the gone client is
        # skipped; both count as cancelled, and the worker is free again.
        wait_until(
            lambda: (
                metric_value(client.get("/metrics").text, "wavenet_cancelled_requests_total") == 2
            ),
            timeout=20,
            message="two cancelled requests",
        )
        served = client.post("/v1/vocode", json=body(3))
        assert served.status_code == 200 and len(served.content) == 2 * 3 * 16

        def audio_seconds() -> float:
            return metric_value(client.get("/metrics").text, "wavenet_audio_seconds_total")

        # Only the served request's audio is counted: the long one never finished.
        wait_until(lambda: audio_seconds() > 0, message="the served batch in /metrics")
        assert audio_seconds() == pytest.approx(3 * 16 / 8000)
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "wavenet_rejected_requests_total") == 1
        assert metric_value(metrics, "wavenet_cancelled_requests_total") == 2
