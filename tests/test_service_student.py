"""Serving the Parallel WaveNet student: batching, streaming, and overlapped chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_student
from service_fixtures import mel_json, random_mel, running_client, service_settings, wait_until

from service.app import create_app
from service.audio_codec import to_pcm16
from service.inference import InferenceWorker
from service.jobs import Job
from wavenet import save_model

pytestmark = pytest.mark.timeout(60)

SPEAKERS = ["ann", "ben"]


def student(**overrides) -> torch.nn.Module:
    return tiny_student(seed=2, randomise=True, speakers=SPEAKERS, **overrides)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(student(), tmp_path_factory.mktemp("served") / "student")


@pytest.fixture(scope="module")
def client(checkpoint: Path):
    with running_client(create_app(service_settings(checkpoint))) as client:
        yield client


def post(client, mel: torch.Tensor, query: str = "", **options) -> bytes:
    body = {"mel": mel_json(mel), "format": "pcm16", **options}
    response = client.post(f"/v1/vocode{query}", json=body)
    assert response.status_code == 200, response.text
    return response.content


def test_the_student_is_described_and_vocodes_like_the_model_alone(client, checkpoint):
    (info,) = client.get("/v1/models").json()["models"]
    assert info["kind"] == "student" and info["speakers"] == SPEAKERS
    mel = random_mel(5, seed=1)
    audio = np.frombuffer(post(client, mel, speaker="ben", temperature=0), dtype="<i2")
    expected = student().generate(mel.unsqueeze(0), torch.tensor([1]), temperature=0.0)[0]
    assert np.array_equal(audio, to_pcm16(expected))


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_student_stream_equals_the_whole_response(client, temperature):
    mel = random_mel(7, seed=2)
    options = dict(speaker=0, temperature=temperature, seed=5)
    assert post(client, mel, "?stream=true", **options) == post(client, mel, **options)


def test_student_batches_return_each_caller_its_own_audio():
    model = student()
    mels = [random_mel(3, seed=3), random_mel(6, seed=4)]
    worker = InferenceWorker(model, max_batch_size=2, chunk_frames=2)
    jobs = [Job(mel, speaker=index, temperature=0.0) for index, mel in enumerate(mels)]
    for job in jobs:
        worker.submit(job)
    worker.start(warmup_frames=1)
    try:
        for index, (job, mel) in enumerate(zip(jobs, mels, strict=True)):
            alone = model.generate(mel.unsqueeze(0), torch.tensor([index]), temperature=0.0)[0]
            torch.testing.assert_close(job.future.result(timeout=30).audio, alone)
    finally:
        worker.stop()


class GenerateOnly(torch.nn.Module):
    """The real student behind the interface of a vocoder without `stream`."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.kind, self.spec, self.config = model.kind, model.spec, model.config
        self.receptive_field = model.receptive_field
        self.conditioning_context = model.conditioning_context

    def generate(self, mel, speaker=None, temperature=1.0, **options):
        return self.model.generate(mel, speaker, temperature, **options)


@pytest.mark.parametrize("upsample", ["interpolate", "repeat"])
def test_overlapped_chunks_of_a_real_student_join_to_the_whole_utterance(upsample):
    model = student(upsample=upsample)
    wrapped = GenerateOnly(model)
    assert not hasattr(wrapped, "stream")
    # Chunks of one frame, much shorter than the context each needs.
    worker = InferenceWorker(wrapped, max_batch_size=2, chunk_frames=1)
    mels = [random_mel(9, seed=6), random_mel(4, seed=7)]
    chunks: list[list[torch.Tensor]] = [[], []]
    jobs = [
        Job(mel, speaker=index, temperature=0.0, on_chunk=chunks[index].append)
        for index, mel in enumerate(mels)
    ]
    for job in jobs:
        worker.submit(job)
    worker.start(warmup_frames=1)
    try:
        for job in jobs:
            job.future.result(timeout=30)
        wait_until(lambda: all(chunks))
    finally:
        worker.stop()
    for index, mel in enumerate(mels):
        whole = model.generate(mel.unsqueeze(0), torch.tensor([index]), temperature=0.0)[0]
        assert [piece.numel() for piece in chunks[index]] == [16] * mel.shape[-1]
        torch.testing.assert_close(torch.cat(chunks[index]), whole, rtol=1e-5, atol=1e-6)
