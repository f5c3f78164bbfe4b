"""The inference worker on its own: batching, queueing, cancellation, seeds, failures."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_teacher
from service_fixtures import SERVED_MODEL, random_mel, wait_until

from service.inference import InferenceWorker
from service.jobs import Job, QueueFullError

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """A BatchObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, float]] = []
        self.cancelled = 0

    def batch_done(self, size: int, audio_seconds: float, compute_seconds: float) -> None:
        self.batches.append((size, audio_seconds))

    def job_cancelled(self) -> None:
        self.cancelled += 1


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(1)
    return tiny_teacher(seed=1, **SERVED_MODEL)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_worker(model, recorder):
    """Workers built unstarted (so tests can queue jobs first), stopped afterwards."""
    workers = []

    def build(**options) -> InferenceWorker:
        fields = dict(max_batch_size=4, batch_wait_s=0.002, queue_size=8, chunk_frames=2)
        worker = InferenceWorker(model, observer=recorder, **{**fields, **options})
        workers.append(worker)
        return worker

    yield build
    for worker in workers:
        worker.stop()


def alone(model, mel: torch.Tensor, speaker: int | None) -> torch.Tensor:
    speakers = None if speaker is None else torch.tensor([speaker])
    return model.generate(mel.unsqueeze(0), speakers, temperature=0.0)[0]


def test_batched_jobs_each_get_their_own_audio(model, make_worker, recorder):
    worker = make_worker()
    short, long = random_mel(3, seed=1), random_mel(5, seed=2)
    jobs = [Job(short, speaker=0, temperature=0.0), Job(long, speaker=1, temperature=0.0)]
    for job in jobs:
        worker.submit(job)
    worker.start(warmup_frames=1)
    results = [job.future.result(timeout=30) for job in jobs]
    wait_until(lambda: recorder.batches, message="the batch report")
    assert recorder.batches[0][0] == 2, "both jobs should have run in one batch"
    assert results[0].audio.shape == (3 * 16,) and results[1].audio.shape == (5 * 16,)
    torch.testing.assert_close(results[0].audio, alone(model, short, 0), rtol=0, atol=1e-6)
    torch.testing.assert_close(results[1].audio, alone(model, long, 1), rtol=0, atol=1e-6)
    assert recorder.batches[0][1] == pytest.approx(8 * 16 / 8000)


def test_incompatible_jobs_run_in_separate_batches(make_worker, recorder):
    worker = make_worker()
    jobs = [
        Job(random_mel(2), speaker=None, temperature=0.0),
        Job(random_mel(2), speaker=0, temperature=0.0),
        Job(random_mel(2), speaker=None, temperature=0.5),
        Job(random_mel(2), speaker=None, temperature=0.0),
    ]
    for job in jobs:
        worker.submit(job)
    worker.start(warmup_frames=1)
    for job in jobs:
        job.future.result(timeout=30)
    wait_until(lambda: len(recorder.batches) == 3, message="three batch reports")
    # The first and last share a key; the other two each need their own batch.
    assert sorted(size for size, _ in recorder.batches) == [1, 1, 2]


def test_full_queue_raises_instead_of_blocking(make_worker):
    worker = make_worker(queue_size=2)
    worker.submit(Job(random_mel(1)))
    worker.submit(Job(random_mel(1)))
    assert worker.depth == 2
    with pytest.raises(QueueFullError):
        worker.submit(Job(random_mel(1)))


def test_cancelled_job_is_dropped_and_the_next_one_served(make_worker, recorder):
    worker = make_worker()
    gone, kept = Job(random_mel(4), temperature=0.0), Job(random_mel(2), temperature=0.5)
    worker.submit(gone)
    worker.submit(kept)
    assert gone.future.cancel()
    worker.start(warmup_frames=1)
    assert kept.future.result(timeout=30).audio.shape == (2 * 16,)
    wait_until(lambda: recorder.batches, message="the batch report")
    assert recorder.cancelled == 1
    assert [size for size, _ in recorder.batches] == [1]


def test_stream_chunks_join_to_the_whole_audio(model, make_worker):
    worker = make_worker(chunk_frames=2)
    mel = random_mel(5, seed=4)
    chunks: list[torch.Tensor] = []
    job = Job(mel, speaker=1, temperature=0.0, on_chunk=chunks.append)
    worker.submit(job)
    worker.start(warmup_frames=1)
    assert job.future.result(timeout=30).audio is None
    assert [chunk.numel() for chunk in chunks] == [32, 32, 16]
    torch.testing.assert_close(torch.cat(chunks), alone(model, mel, 1), rtol=0, atol=1e-6)


def test_seed_makes_sampling_reproducible(make_worker):
    worker = make_worker()
    worker.start(warmup_frames=1)
    mel = random_mel(3, seed=5)

    def sample(seed: int) -> torch.Tensor:
        job = Job(mel, temperature=1.0, seed=seed)
        return worker.submit(job).result(timeout=30).audio

    first, again, other = sample(7), sample(7), sample(8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert Job(mel, seed=7).batch_key() != Job(mel, seed=7).batch_key()


def test_a_failing_batch_fails_its_jobs_and_the_worker_goes_on(make_worker):
    worker = make_worker()
    worker.start(warmup_frames=1)
    assert worker.ready.wait(30)
    # Speaker 9 does not exist: the model itself raises for this batch.
    broken = worker.submit(Job(random_mel(2), speaker=9, temperature=0.0))
    assert isinstance(broken.exception(timeout=30), ValueError)
    fine = worker.submit(Job(random_mel(2), speaker=1, temperature=0.0))
    assert fine.result(timeout=30).audio.shape == (32,)
    assert worker.alive


def test_ready_only_after_warm_up_and_not_after_stop(make_worker):
    worker = make_worker()
    assert not worker.ready.is_set()
    worker.start(warmup_frames=2)
    assert worker.ready.wait(30)
    assert worker.warmup_error is None
    worker.stop()
    assert not worker.ready.is_set() and not worker.alive


def test_stop_fails_the_jobs_still_waiting(make_worker):
    worker = make_worker()
    waiting = worker.submit(Job(random_mel(1)))
    worker.stop()
    assert isinstance(waiting.exception(timeout=1), RuntimeError)
