"""`wavenet bench-service` against a real uvicorn server serving a tiny student."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import tiny_student
from service_fixtures import running_server, service_settings

from service.app import create_app
from service.loadtest import LoadTestError, check_loopback
from wavenet import save_model
from wavenet.cli import main

# 0.04 s at 8 kHz with a 16-sample hop: 20 frames, within the test service's 32.
SECONDS = "0.04"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """A served tiny student whose queue holds 4 requests, one request per batch."""
    checkpoint = save_model(
        tiny_student(randomise=True), tmp_path_factory.mktemp("served") / "student"
    )
    settings = service_settings(checkpoint, queue_size=4, max_batch_size=1, batch_wait_ms=0)
    with running_server(create_app(settings)) as base_url:
        yield base_url


@pytest.mark.timeout(120)
def test_levels_and_overload_against_a_running_service(url, capsys):
    args = ["bench-service", "--url", url, "--concurrency", "1", "4", "--seconds", SECONDS]
    args += ["--requests-per-level", "6", "--overload", "24", "--max-seconds", "60", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["kind"] == "student"
    assert report["audio_seconds_per_request"] == pytest.approx(0.04)
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["errors"] == {} and level["served"] == level["requests"] == 6
        latency = level["latency_s"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        assert level["requests_per_s"] > 0
        assert level["audio_seconds_per_s"] == pytest.approx(level["requests_per_s"] * 0.04)
    overload = report["overload"]
    assert overload["requests"] == 24
    assert overload["served"] + sum(overload["errors"].values()) == 24
    assert overload["rejected"] == overload["errors"].get("503", 0)
    # A burst this size usually overflows the queue of 4; when the tiny model keeps up, the
    # report says that no 503 was needed.
    assert overload["rejected"] > 0 or "was refused with 503" in overload["note"]
    assert overload["recovery"]["recovered"] and overload["recovery"]["status"] == "200"


def test_the_table_shows_each_level_and_the_overload(url, capsys):
    args = ["bench-service", "--url", url, "--concurrency", "2", "--seconds", SECONDS]
    assert main([*args, "--requests-per-level", "2", "--overload", "0"]) == 0
    table = capsys.readouterr().out
    assert "| 2 | 2 | 2 | 0 |" in table
    assert "Overload: not run (--overload 0)." in table


def test_too_long_an_utterance_is_refused_before_any_load(url, capsys):
    args = ["bench-service", "--url", url, "--seconds", "1", "--requests-per-level", "1"]
    assert main(args) == 2
    assert "needs 500 mel frames; the service accepts at most 32" in capsys.readouterr().err


@pytest.mark.parametrize(
    "address",
    ["http://127.0.0.1:8000", "http://127.8.9.10", "http://localhost:1/", "http://[::1]:8000"],
)
def test_loopback_addresses_are_accepted(address):
    assert check_loopback(address) == address.rstrip("/")


@pytest.mark.parametrize(
    "address", ["http://10.0.0.5:8000", "https://example.com", "http://0.0.0.0:8000"]
)
def test_other_hosts_are_refused(address):
    with pytest.raises(LoadTestError, match="only a service on this machine"):
        check_loopback(address)


def test_a_remote_url_is_refused_by_the_command(capsys):
    assert main(["bench-service", "--url", "http://192.0.2.7:8000"]) == 2
    error = capsys.readouterr().err
    assert "only a service on this machine may be load-tested" in error
    assert "not 192.0.2.7" in error


def test_a_service_that_is_not_there_is_named(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["bench-service", "--url", f"http://127.0.0.1:{port}"]) == 2
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_url_without_a_host_is_refused(capsys):
    assert main(["bench-service", "--url", "127.0.0.1:8000"]) == 2
    assert "expected a URL like http://127.0.0.1:8000" in capsys.readouterr().err
    assert main(["bench-service", "--url", "http://127.0.0.1:80000"]) == 2
    assert "the port is not a number from 0 to 65535" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_hostile_clients_against_a_running_service(tmp_path, capsys):
    checkpoint = save_model(tiny_student(randomise=True), tmp_path / "student")
    # Short timeouts, so that half-sent heads and slow bodies are answered within the hold.
    settings = service_settings(
        checkpoint, max_frames=1000, header_timeout_s=0.5, body_timeout_s=0.5, api_key="k"
    )
    with running_server(create_app(settings)) as base_url:
        args = ["bench-service", "--url", base_url, "--hostile", "--hold-seconds", "2"]
        assert main([*args, "--api-key", "k", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["case"]: row for row in report["cases"]}
    assert len(rows) == 12 and rows["8 MB upload without the key"]["got"] == "401"
    assert rows["upload at 2147483647 Hz"]["got"] == "422"
    assert [name for name, row in rows.items() if not row["ok"]] == []
    assert all(row["valid_request"]["status"] == "200" for row in rows.values())
    assert report["server_errors"] == 0


def test_hostile_answers_are_summarised_and_checked():
    from service.hostile import Reply
    from service.hostile_bench import as_expected, got

    replies = [Reply(status=408, closed=True)] * 3 + [Reply(closed=True)]
    assert got(replies) == "3 x 408, 1 x closed"
    assert as_expected(got(replies), "408 or closed")
    assert not as_expected(got([*replies, Reply()]), "408 or closed")
    assert got(Reply(status=413)) == "413" and as_expected("413", "413")
