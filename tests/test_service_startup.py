"""Starting the service: settings from the environment, and refusing to start with a reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch
from conftest import tiny_spec
from fastapi.testclient import TestClient
from pydantic import ValidationError
from service_fixtures import free_port, running_client, save_served_checkpoint, service_settings

from service.app import create_app, run
from service.runtime import StartupError, check_servable
from service.settings import Settings
from wavenet import Classifier, ClassifierConfig, save_model
from wavenet.checkpoint import model_kinds
from wavenet.cli import main

pytestmark = pytest.mark.timeout(60)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_settings_come_from_wavenet_environment_variables(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("WAVENET_MODEL", "/srv/models/student")
    monkeypatch.setenv("WAVENET_MAX_FRAMES", "12")
    monkeypatch.setenv("WAVENET_API_KEY", "k3y")
    monkeypatch.setenv("WAVENET_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("WAVENET_DEVICE", "cpu")
    settings = Settings()
    assert settings.model == Path("/srv/models/student")
    assert settings.max_frames == 12 and settings.device == "cpu"
    assert settings.api_key.get_secret_value() == "k3y"
    assert settings.cors_origins == ["http://a.example", "http://b.example"]
    monkeypatch.setenv("WAVENET_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="device"):
        Settings()


def test_defaults_serve_the_shipped_student_with_cors_and_key_off(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.model == Path("models/default/student")
    assert settings.api_key is None and settings.cors_origins == []


def test_missing_checkpoint_stops_the_app_naming_the_path(tmp_path):
    missing = tmp_path / "models" / "nowhere"
    app = create_app(service_settings(missing))
    with pytest.raises(StartupError, match=str(missing)), TestClient(app):
        pass


def test_wavenet_serve_without_the_default_model_exits_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "0"])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "models/default/student" in error and "does not exist" in error


@pytest.mark.timeout(120)
def test_wavenet_serve_process_exits_non_zero(tmp_path):
    missing = tmp_path / "absent"
    done = subprocess.run(
        [sys.executable, "-m", "wavenet.cli", "serve", "--model", str(missing)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode != 0
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr


@NO_CUDA
def test_cuda_without_a_gpu_is_refused(tmp_path):
    checkpoint = save_served_checkpoint(tmp_path / "tiny")
    app = create_app(service_settings(checkpoint, device="cuda"))
    with pytest.raises(StartupError, match="no CUDA device"), TestClient(app):
        pass


@NO_CUDA
def test_run_with_cuda_without_a_gpu_exits_with_one_line(monkeypatch, tmp_path, capsys):
    checkpoint = save_served_checkpoint(tmp_path / "tiny")
    monkeypatch.setenv("WAVENET_DEVICE", "cuda")
    with pytest.raises(SystemExit) as exited:
        run(model=checkpoint, port=0)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "CUDA" in error


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("WAVENET_MAX_FRAMES", "abc", "WAVENET_MAX_FRAMES=abc: Input should be a valid integer"),
        ("WAVENET_DEVICE", "tpu", "WAVENET_DEVICE=tpu: Input should be 'auto', 'cuda' or 'cpu'"),
        ("WAVENET_QUEUE_SIZE", "0", "WAVENET_QUEUE_SIZE=0: Input should be greater than 0"),
        ("WAVENET_API_KEY", "", "WAVENET_API_KEY: is empty; unset it to serve without a key"),
        ("WAVENET_API_KEY", "  ", "WAVENET_API_KEY: is empty"),
    ],
)
def test_invalid_settings_exit_2_with_one_line_naming_the_variable(
    monkeypatch, tmp_path, capsys, variable, value, words
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exited:
        run(model=tmp_path, port=0)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert error.startswith("wavenet serve: error: invalid settings: ") and words in error


def test_a_classifier_checkpoint_is_refused_at_start(tmp_path, capsys):
    config = ClassifierConfig(
        layers=2, dilation_cycle=2, channels=8, units=["a", "b"], feature_layers=[1]
    )
    checkpoint = save_model(Classifier(config, tiny_spec()), tmp_path / "classifier")
    with pytest.raises(SystemExit) as exited:
        run(model=checkpoint, port=0)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"{checkpoint} is a classifier checkpoint" in error
    assert "vocodes with a student or teacher checkpoint" in error


def test_every_kind_of_checkpoint_but_student_and_teacher_is_refused():
    refused = [kind for kind in model_kinds() if kind not in ("student", "teacher")]
    assert "classifier" in refused
    for kind in refused:
        with pytest.raises(StartupError, match=f"is a {kind} checkpoint"):
            check_servable(SimpleNamespace(kind=kind), Path("models/x"))


def test_docs_can_be_switched_off_and_metrics_served_on_their_own_port(tmp_path):
    checkpoint = save_served_checkpoint(tmp_path / "tiny")
    port = free_port()
    app = create_app(service_settings(checkpoint, docs=False, metrics_port=port))
    with running_client(app) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404
        assert client.get("/metrics").status_code == 404
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert "wavenet_queue_depth" in metrics.text
        assert "process_resident_memory_bytes" in metrics.text
