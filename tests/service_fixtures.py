"""Helpers shared by the service tests: a tiny served checkpoint, clients, a real server."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import torch
import uvicorn
from conftest import tiny_teacher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.audio_codec import to_pcm16
from service.server import uvicorn_config
from service.settings import Settings
from wavenet import load_model, save_model

# Two layers: each generated sample costs about a millisecond on a busy CPU.
SERVED_MODEL = dict(layers=2, dilation_cycle=2)
N_MELS = 8
HOP = 16
SAMPLE_RATE = 8000


def save_served_checkpoint(directory: Path) -> Path:
    """A tiny two-speaker teacher checkpoint (8 kHz, hop 16, 8 mels); test modules save one
    with a module-scoped `checkpoint` fixture."""
    return save_model(tiny_teacher(seed=3, **SERVED_MODEL), directory)


def service_settings(checkpoint: Path, **overrides) -> Settings:
    """Settings for tests: CPU, small limits, short waits; `overrides` replace any field.

    The served tiny teacher takes milliseconds per frame, so its own frame limit (meant for
    real teachers) is lifted: WAVENET_MAX_FRAMES applies, as for a student.
    """
    fields = dict(
        model=checkpoint,
        device="cpu",
        max_frames=32,
        teacher_max_frames=1_000_000,
        log_level="warning",
        warmup_frames=2,
        batch_wait_ms=2.0,
        stream_chunk_frames=2,
        torch_threads=1,
    )
    return Settings(**{**fields, **overrides})


def wait_until(condition, timeout: float = 10.0, message: str = "condition") -> None:
    """Poll `condition()` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


@contextlib.contextmanager
def running_client(app: FastAPI, **client_options) -> Iterator[TestClient]:
    """A TestClient with the app started and warmed up (/readyz 200)."""
    with TestClient(app, **client_options) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, message="/readyz")
        yield client


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` as `wavenet serve` does (its settings' limits and protocol), with uvicorn on
    a free local port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, app.state.settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, message="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def random_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """A reproducible log-mel-like input (n_mels, frames)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(N_MELS, frames, generator=generator) - 4.0


def mel_json(mel: torch.Tensor) -> list[list[float]]:
    """A mel (n_mels, frames) as the API's JSON rows (frames x n_mels)."""
    return mel.T.tolist()


def reference_pcm16(checkpoint: Path, mel: torch.Tensor, speaker: int | None) -> np.ndarray:
    """What the served model makes for `mel` alone at temperature 0, as int16 samples."""
    model = load_model(checkpoint)
    speakers = None if speaker is None else torch.tensor([speaker])
    return to_pcm16(model.generate(mel.unsqueeze(0), speakers, temperature=0.0)[0])


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """int16 samples and sample rate of a WAV body, read by libsndfile."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return samples, rate


def metric_value(text: str, name: str) -> float:
    """The value of the unlabelled sample `name` in a Prometheus exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# A window of 32 ms (256 samples at 8 kHz) holds several periods of the test voices, as the
# real FeatureSpec's does; the 8 ms window of the tiny spec is about one period, so its mel
# ripples with the waveform's phase and the source's amplitudes copy that ripple.
PITCH_SPEC = dict(n_fft=256, win_length=256, hop_length=32, n_mels=16)


def save_pitch_checkpoints(directory: Path) -> tuple[Path, Path]:
    """A pitch-aware tiny student (harmonic source, untrained flows: its output is the
    harmonic synthesis at the F0 it is given) in `directory/student`, and a tiny random pitch
    predictor beside it in `directory/pitch` (the default place the service looks)."""
    from conftest import tiny_spec, tiny_student

    from wavenet.excitation import ExcitationSpec
    from wavenet.pitch import PitchSpec
    from wavenet.pitch_model import PitchPredictor, PitchPredictorConfig
    from wavenet.source import SourceConfig

    spec = tiny_spec(**PITCH_SPEC)
    excitation = ExcitationSpec(harmonics=3, f0_max=1000.0)
    # The shipped layout's source (training/configs/student_cpu_pitch.yaml): refinement and
    # resynthesis rounds, so a shifted request's voiced noise must be held down (`shifted`),
    # and the noise gate.
    settings = SourceConfig(resynthesis=1, gate_iterations=5)
    source = dict(source="harmonic", source_settings=settings)
    student = tiny_student(spec=spec, excitation=excitation, pitch=PitchSpec(), **source)
    torch.manual_seed(5)
    predictor = PitchPredictor(PitchPredictorConfig(channels=8, dilations=[1, 2]), spec).eval()
    with torch.no_grad():
        predictor.head.bias[0] = 2.0  # voiced in most frames, as a predictor on speech is
    return save_model(student, directory / "student"), save_model(predictor, directory / "pitch")


def voice(f0: float, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A steady voiced sound: harmonics of `f0` below Nyquist with falling amplitudes."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    harmonics = [k for k in range(1, 40) if k * f0 < sample_rate / 2]
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in harmonics).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A PCM16 WAV file of float samples in [-1, 1]."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
