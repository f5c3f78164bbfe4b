"""The HTTP API with a tiny teacher on CPU: endpoints, formats, streaming, batching, metrics."""

from __future__ import annotations

import base64
import io
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tone
from fastapi.testclient import TestClient
from service_fixtures import (
    SAMPLE_RATE,
    decode_wav,
    mel_json,
    metric_value,
    random_mel,
    reference_pcm16,
    running_client,
    save_served_checkpoint,
    service_settings,
    wait_until,
)
from test_service_codec import g711_decode

from service.app import create_app
from wavenet import load_model
from wavenet.audio import load_audio

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_served_checkpoint(tmp_path_factory.mktemp("served") / "tiny")


@pytest.fixture(scope="module")
def client(checkpoint: Path):
    with running_client(create_app(service_settings(checkpoint))) as client:
        yield client


def vocode(client: TestClient, mel: torch.Tensor, query: str = "", **options):
    body = {"mel": mel_json(mel), "temperature": 0, **options}
    response = client.post(f"/v1/vocode{query}", json=body)
    assert response.status_code == 200, response.text
    return response


def test_models_describes_the_checkpoint(client, checkpoint):
    model = load_model(checkpoint)
    (info,) = client.get("/v1/models").json()["models"]
    assert info["name"] == checkpoint.name
    assert info["kind"] == "teacher"
    assert info["sample_rate"] == SAMPLE_RATE
    assert info["spec"] == model.spec.model_dump(mode="json")
    assert info["speakers"] == ["alice", "bob"]
    assert info["receptive_field"] == model.receptive_field
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["formats"] == ["wav", "pcm16", "mulaw", "flac"]


def test_health_endpoints(client):
    assert client.get("/livez").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"


def test_not_ready_before_the_model_is_loaded(checkpoint):
    app = create_app(service_settings(checkpoint))
    unstarted = TestClient(app)  # no `with`: the lifespan has not run
    assert unstarted.get("/livez").status_code == 200
    response = unstarted.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "not ready"
    assert unstarted.get("/v1/models").status_code == 503


def test_vocode_returns_the_models_audio_with_headers(client, checkpoint):
    mel = random_mel(3, seed=1)
    response = vocode(client, mel, speaker="bob", format="pcm16")
    assert response.headers["content-type"] == "audio/pcm"
    samples = np.frombuffer(response.content, dtype="<i2")
    assert np.array_equal(samples, reference_pcm16(checkpoint, mel, speaker=1))
    assert response.headers["x-sample-rate"] == "8000"
    assert float(response.headers["x-audio-seconds"]) == pytest.approx(3 * 16 / 8000)
    assert float(response.headers["x-inference-ms"]) > 0


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("wav", "audio/wav"),
        ("flac", "audio/flac"),
        ("pcm16", "audio/pcm"),
        ("mulaw", "audio/basic"),
    ],
)
def test_every_format_decodes_to_the_same_audio(client, checkpoint, fmt, media_type):
    mel = random_mel(2, seed=2)
    expected = reference_pcm16(checkpoint, mel, speaker=0)
    response = vocode(client, mel, speaker=0, format=fmt)
    assert response.headers["content-type"] == media_type
    if fmt in ("wav", "flac"):
        samples, rate = decode_wav(response.content)
        assert rate == SAMPLE_RATE and np.array_equal(samples, expected)
    elif fmt == "pcm16":
        assert np.array_equal(np.frombuffer(response.content, dtype="<i2"), expected)
    else:
        codes = np.frombuffer(response.content, dtype=np.uint8)
        assert codes.size == expected.size
        # mu-law keeps about 1/16 of each sample's magnitude.
        error = np.abs(g711_decode(codes) - expected)
        assert np.all(error <= np.abs(expected.astype(np.int32)) / 16 + 16)


def test_base64_and_npy_bodies_match_json(client):
    mel = random_mel(3, seed=3)
    expected = vocode(client, mel, speaker=1, format="pcm16").content
    b64 = base64.b64encode(mel.numpy().astype("<f4").tobytes()).decode()
    body = {"mel": {"b64": b64, "shape": [8, 3]}, "speaker": 1, "temperature": 0, "format": "pcm16"}
    response = client.post("/v1/vocode", json=body)
    assert response.status_code == 200 and response.content == expected
    npy = io.BytesIO()
    np.save(npy, mel.numpy())
    response = client.post(
        "/v1/vocode?speaker=bob&temperature=0&format=pcm16",
        content=npy.getvalue(),
        headers={"content-type": "application/x-npy"},
    )
    assert response.status_code == 200 and response.content == expected


def test_json_options_win_over_the_query(client):
    mel = random_mel(2, seed=4)
    by_body = vocode(client, mel, query="?speaker=alice&format=wav", speaker=1, format="pcm16")
    assert by_body.headers["content-type"] == "audio/pcm"
    assert by_body.content == vocode(client, mel, speaker="bob", format="pcm16").content


@pytest.mark.parametrize("fmt", ["wav", "pcm16", "mulaw"])
def test_streaming_equals_the_whole_response(client, fmt):
    mel = random_mel(5, seed=5)
    whole = vocode(client, mel, speaker=0, format=fmt).content
    streamed = vocode(client, mel, query="?stream=true", speaker=0, format=fmt)
    assert float(streamed.headers["x-audio-seconds"]) == pytest.approx(5 * 16 / 8000)
    if fmt == "wav":
        header = streamed.content[:44]
        assert struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF
        assert struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF
        assert streamed.content[44:] == whole[44:]
    else:
        assert streamed.content == whole


def test_resynthesize_vocodes_the_uploads_features(client, tmp_path, checkpoint):
    clip = write_tone(tmp_path / "tone.wav", seconds=0.01)
    spec = load_model(checkpoint).spec
    mel = spec.extract(load_audio(clip, SAMPLE_RATE))
    expected = vocode(client, mel, speaker=1, format="pcm16").content
    with clip.open("rb") as upload:
        form = {"speaker": "bob", "temperature": "0", "format": "pcm16"}
        response = client.post("/v1/resynthesize", files={"file": upload}, data=form)
    assert response.status_code == 200, response.text
    assert response.content == expected
    streamed = client.post(
        "/v1/resynthesize?stream=true", files={"file": clip.read_bytes()}, data=form
    )
    assert streamed.status_code == 200 and streamed.content == expected


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])
def test_resynthesize_takes_flac_and_ogg(client, tmp_path, suffix):
    import soundfile

    samples, rate = soundfile.read(write_tone(tmp_path / "tone.wav", seconds=0.01))
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, samples, rate)
    response = client.post("/v1/resynthesize", files={"file": path.read_bytes()})
    assert response.status_code == 200, response.text
    assert decode_wav(response.content)[0].size == 5 * 16


def test_seed_makes_sampling_reproducible(client):
    mel = random_mel(3, seed=6)
    first = vocode(client, mel, temperature=1.0, seed=11, format="pcm16").content
    assert vocode(client, mel, temperature=1.0, seed=11, format="pcm16").content == first
    assert vocode(client, mel, temperature=1.0, seed=12, format="pcm16").content != first


def test_concurrent_requests_are_batched_and_each_gets_its_own_audio(checkpoint):
    settings = service_settings(checkpoint, max_batch_size=2, batch_wait_ms=3000)
    app = create_app(settings)
    mels = [random_mel(2, seed=7), random_mel(4, seed=8)]
    replies: dict[int, bytes] = {}
    with running_client(app) as client:

        def call(index: int) -> None:
            replies[index] = vocode(client, mels[index], speaker=index, format="pcm16").content

        threads = [threading.Thread(target=call, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wait_until(lambda: "wavenet_batch_size_count 1.0" in client.get("/metrics").text)
        text = client.get("/metrics").text
    assert 'wavenet_batch_size_bucket{le="1.0"} 0.0' in text
    assert 'wavenet_batch_size_bucket{le="2.0"} 1.0' in text
    for index, mel in enumerate(mels):
        expected = reference_pcm16(checkpoint, mel, speaker=index)
        assert np.array_equal(np.frombuffer(replies[index], dtype="<i2"), expected)


def test_metrics_appear_and_change(client):
    before = client.get("/metrics").text
    for name in ("wavenet_queue_depth", "wavenet_audio_seconds_total"):
        assert name in before
    vocode(client, random_mel(4, seed=9), format="wav")
    wait_until(
        lambda: (
            metric_value(client.get("/metrics").text, "wavenet_batch_size_count")
            > metric_value(before, "wavenet_batch_size_count")
        )
    )
    after = client.get("/metrics").text
    seconds = 4 * 16 / 8000
    assert metric_value(after, "wavenet_audio_seconds_total") == pytest.approx(
        metric_value(before, "wavenet_audio_seconds_total") + seconds
    )
    assert metric_value(after, "wavenet_real_time_factor_count") == (
        metric_value(before, "wavenet_real_time_factor_count") + 1
    )
    assert metric_value(after, "wavenet_queue_depth") == 0
    assert 'http_requests_total{handler="/v1/vocode",method="POST",status="2xx"}' in after


def test_api_key_guards_the_v1_routes(checkpoint):
    app = create_app(service_settings(checkpoint, api_key="open sesame"))
    with running_client(app) as client:
        missing = client.get("/v1/models")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "API key" in missing.json()["detail"]
        wrong = client.post(
            "/v1/vocode", json={"mel": mel_json(random_mel(1))}, headers=_bearer("guess")
        )
        assert wrong.status_code == 401
        assert client.get("/v1/models", headers=_bearer("open sesame")).status_code == 200
        body = {"mel": mel_json(random_mel(1)), "temperature": 0}
        good = client.post("/v1/vocode", json=body, headers=_bearer("open sesame"))
        assert good.status_code == 200
        assert client.get("/livez").status_code == 200


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_cors_is_off_unless_configured(client, checkpoint):
    preflight = {"Origin": "http://example.org", "Access-Control-Request-Method": "POST"}
    closed = client.options("/v1/vocode", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    app = create_app(service_settings(checkpoint, cors_origins=["http://example.org"]))
    with running_client(app) as open_client:
        allowed = open_client.options("/v1/vocode", headers=preflight).headers
        assert allowed["access-control-allow-origin"] == "http://example.org"
        reply = open_client.get("/v1/models", headers={"Origin": "http://example.org"}).headers
        assert "X-Audio-Seconds" in reply["access-control-expose-headers"]


def test_demo_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="clip"' in page.text and "/static/demo.js" in page.text
    assert client.get("/static/demo.js").status_code == 200
