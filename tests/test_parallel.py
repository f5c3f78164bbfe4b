"""Windows of one generation computed side by side: the pool, the ordered runner, the
source's parameters in pieces, and a student's stream with several torch threads."""

import threading
import time

import pytest
import torch
from test_pitch_models import pitch_student, voiced_inputs

import wavenet.source_flow as source_flow
from wavenet.parallel import in_order, window_pool
from wavenet.source import SourceConfig
from wavenet.source_flow import pieces, piecewise_parameters, source_parameters


@pytest.fixture
def two_threads():
    """torch with 2 threads for the test (conftest runs the suite with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_no_pool_for_one_thread_or_a_gpu(two_threads):
    assert window_pool("cuda") is None
    pool = window_pool("cpu")
    assert pool is not None and pool._max_workers == 2
    assert window_pool(torch.device("cpu")) is pool  # one pool per thread count, shared
    torch.set_num_threads(1)
    assert window_pool("cpu") is None


def test_in_order_yields_in_submission_order_with_bounded_work_in_flight(two_threads):
    pool = window_pool("cpu")
    started, lock = [], threading.Lock()

    def job(index):
        def run():
            with lock:
                started.append(index)
            time.sleep(0.02 * (5 - index % 5))  # early jobs finish last
            return index, torch.get_num_threads(), threading.current_thread().name

        return run

    consumed = []
    for index, threads, name in in_order(pool, (job(i) for i in range(10)), ahead=3):
        with lock:
            assert max(started) <= index + 3  # never more than 3 submitted and not yielded
        consumed.append(index)
        assert threads == 1 and name.startswith("wavenet-window")  # single-threaded workers
    assert consumed == list(range(10))


def test_in_order_runs_jobs_in_the_callers_modes_and_raises_their_errors(two_threads):
    pool = window_pool("cpu")

    def modes():
        return torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    with torch.inference_mode():
        assert list(in_order(pool, [modes])) == [(False, True)]
    with torch.no_grad():
        assert list(in_order(pool, [modes])) == [(False, False)]
    assert list(in_order(pool, [modes])) == [(True, False)]
    assert list(in_order(None, [modes])) == [(True, False)]  # no pool: here

    def fails():
        raise ValueError("window 3 failed")

    with pytest.raises(ValueError, match="window 3 failed"):
        list(in_order(pool, [modes, fails, modes]))


def test_pieces_cover_the_frames_once_with_context_inside_the_utterance(monkeypatch):
    monkeypatch.setattr(source_flow, "PIECE_FRAMES", 10)
    assert pieces(7, 3) == [(0, 0, 7, 7)]
    assert pieces(25, 3) == [(0, 0, 10, 13), (7, 10, 20, 23), (17, 20, 25, 25)]


@pytest.mark.parametrize("resynthesis, gate", [(0, 0), (1, 0), (1, 5)])
@pytest.mark.parametrize("pooled", [False, True])
def test_parameters_in_pieces_equal_the_whole_utterances(
    monkeypatch, two_threads, resynthesis, gate, pooled
):
    """Each piece on its window with the source's context gives the whole computation's
    amplitudes and noise magnitudes (float rounding), on a pool or here; a window that
    straddles pieces is stitched from both."""
    monkeypatch.setattr(source_flow, "PIECE_FRAMES", 16)
    settings = SourceConfig(resynthesis=resynthesis, gate_iterations=gate)
    student = pitch_student(source="harmonic", source_settings=settings)
    _, mel, f0, phase = voiced_inputs(student.spec, frames=80, batch=2)
    shifted = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        whole = source_parameters(student.source, mel, f0, phase, shifted)
        frames = piecewise_parameters(
            student.source, mel, f0, phase, shifted, window_pool("cpu") if pooled else None
        )
        for start, stop in [(0, 80), (3, 14), (12, 37), (40, 80)]:
            part = frames(start, stop)
            for mine, theirs in zip(part, whole, strict=True):
                torch.testing.assert_close(mine, theirs[..., start:stop], rtol=1e-5, atol=1e-9)
    assert whole.amplitudes.abs().amax() > 0 and whole.magnitude.abs().amax() > 0


def test_a_stream_on_two_threads_is_the_stream_on_one(monkeypatch):
    """Chunks computed side by side (and the source's pieces) give what one thread gives,
    for a padded batch too."""
    monkeypatch.setattr(source_flow, "PIECE_FRAMES", 16)
    student = pitch_student(source="harmonic", source_settings=SourceConfig(resynthesis=1))
    _, mel, f0, phase = voiced_inputs(student.spec, frames=45, batch=2)
    lengths = torch.tensor([45, 30])
    f0[1, 30:] = 0.0

    def stream():
        generator = torch.Generator().manual_seed(4)
        options = dict(f0=f0, phase=phase, generator=generator, frames_per_chunk=6)
        plain = student.generate(mel, **options)
        generator.manual_seed(4)
        padded = student.generate(mel, mel_lengths=lengths, **options)
        return plain, padded

    one = stream()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = stream()
    finally:
        torch.set_num_threads(threads)
    for mine, theirs in zip(two, one, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)
        assert theirs.abs().amax() > 0.01


def test_a_forked_process_makes_its_own_pool(two_threads):
    """A child forked after the parent made its pool cannot use the parent's threads: it gets
    a pool of its own, and a stream there still runs."""
    import multiprocessing

    parent = window_pool("cpu")
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as children:
        child_ran, same = children.apply_async(_child_pool_runs, (id(parent),)).get(timeout=60)
    assert child_ran and not same


def _child_pool_runs(parent_id):
    pool = window_pool("cpu")
    return list(in_order(pool, [lambda: 7, lambda: 8])) == [7, 8], id(pool) == parent_id
