"""`wavenet bench-service`: a bounded load generator for a service running on this machine.

At each concurrency level, that many clients send `POST /v1/vocode` requests one after the
other until the level's request count or the time budget is spent; it reports latency
percentiles of the served requests, served requests and seconds of audio per second, and
errors by status code. Then an overload phase sends more requests at once than the queue
holds, counts the 503s, and checks that one request afterwards is served again.

Only loopback addresses are accepted: this is a benchmark of one's own service, not a tool
to load someone else's. The mels are random, shaped by the FeatureSpec that `GET /v1/models`
reports. Nothing here imports FastAPI; it is an HTTP client.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

__all__ = ["LoadTestError", "check_loopback", "format_table", "load_test", "run"]


class LoadTestError(Exception):
    """The load test cannot run; the message says why in one line."""


def check_loopback(url: str) -> str:
    """`url` without a trailing slash, if it is http(s) on localhost, 127.0.0.0/8 or ::1.

    Raises:
        LoadTestError: for any other scheme or host.
    """
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise LoadTestError(f"{url}: the port is not a number from 0 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"{url}: expected a URL like http://127.0.0.1:8000")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if not loopback:
        raise LoadTestError(
            f"{url}: only a service on this machine may be load-tested "
            f"(localhost, 127.0.0.0/8 or ::1), not {host}"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class Outcome:
    """One request: its status code (or the transport error's name) and how long it took."""

    status: str
    latency_s: float
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "200"


async def send(client: httpx.AsyncClient, body: bytes) -> Outcome:
    """POST one vocode request; a timeout or a dropped connection is an outcome too."""
    start = time.perf_counter()
    try:
        response = await client.post(
            "/v1/vocode", content=body, headers={"content-type": "application/json"}
        )
    except httpx.TimeoutException:
        return Outcome("timeout", time.perf_counter() - start)
    except httpx.TransportError as error:
        return Outcome(type(error).__name__, time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    return Outcome(str(response.status_code), elapsed, response.headers.get("retry-after"))


def error_counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Failed requests by status code (or error name)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return dict(sorted(counts.items()))


def summarise(outcomes: list[Outcome], wall_s: float, audio_s: float) -> dict:
    """Counts, throughput and latency percentiles (of the served requests) of one phase."""
    served = [outcome.latency_s for outcome in outcomes if outcome.ok]
    p50, p95, p99 = np.percentile(served, [50, 95, 99]).tolist() if served else (None,) * 3
    return {
        "requests": len(outcomes),
        "served": len(served),
        "errors": error_counts(outcomes),
        "wall_s": wall_s,
        "requests_per_s": len(served) / wall_s,
        "audio_seconds_per_s": len(served) * audio_s / wall_s,
        "latency_s": {"p50": p50, "p95": p95, "p99": p99},
    }


async def run_level(
    client: httpx.AsyncClient, body: bytes, concurrency: int, count: int, deadline: float
) -> list[Outcome]:
    """`concurrency` clients, each sending its next request once the last one is answered,
    until `count` requests are sent or `deadline` (time.monotonic) has passed."""
    outcomes: list[Outcome] = []
    left = count

    async def one_client() -> None:
        nonlocal left
        while left > 0 and time.monotonic() < deadline:
            left -= 1
            outcomes.append(await send(client, body))

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return outcomes


async def overload(client: httpx.AsyncClient, body: bytes, count: int, audio_s: float) -> dict:
    """`count` requests at once, then one more on its own to see that the service recovered."""
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(send(client, body) for _ in range(count)))
    result = summarise(outcomes, time.perf_counter() - start, audio_s)
    refused = [outcome for outcome in outcomes if outcome.status == "503"]
    result["rejected"] = len(refused)
    result["retry_after"] = refused[0].retry_after if refused else None
    if not refused:
        result["note"] = (
            f"none of the {count} requests was refused with 503: the service held them all "
            "(raise --overload above WAVENET_QUEUE_SIZE plus a batch or two to see 503s)"
        )
    recovery = await send(client, body)
    result["recovery"] = {
        "status": recovery.status,
        "latency_s": recovery.latency_s,
        "recovered": recovery.ok,
    }
    return result


async def describe_service(client: httpx.AsyncClient) -> dict:
    """The served model of `GET /v1/models`, once `/readyz` says ready."""
    try:
        ready = await client.get("/readyz")
        models = await client.get("/v1/models")
    except httpx.TransportError as error:
        raise LoadTestError(f"cannot reach {client.base_url}: {error}") from None
    if ready.status_code != 200:
        raise LoadTestError(f"{client.base_url}/readyz: {ready.status_code} {ready.text[:200]}")
    if models.status_code == 401:
        raise LoadTestError("the service needs an API key: pass --api-key or WAVENET_API_KEY")
    try:
        return models.raise_for_status().json()["models"][0]
    except (httpx.HTTPStatusError, ValueError, LookupError):
        raise LoadTestError(
            f"{client.base_url}/v1/models: {models.status_code} {models.text[:200]} "
            "(is this the wavenet service?)"
        ) from None


def request_body(model: dict, seconds: float, audio_format: str) -> tuple[bytes, int]:
    """A JSON vocode body of random log-mel frames lasting `seconds`, and its frame count.

    Raises:
        LoadTestError: if the service accepts fewer frames than that.
    """
    spec = model["spec"]
    # As FeatureSpec.frames_for: enough frames to cover the samples.
    frames = max(1, math.ceil(round(seconds * spec["sample_rate"]) / spec["hop_length"]))
    if frames > model["max_frames"]:
        raise LoadTestError(
            f"--seconds {seconds:g} needs {frames} mel frames; the service accepts at most "
            f"{model['max_frames']} (WAVENET_MAX_FRAMES)"
        )
    rng = np.random.default_rng(0)
    mel = (rng.standard_normal((spec["n_mels"], frames)) - 5.0).astype("<f4")
    body = {
        "mel": {"b64": base64.b64encode(mel.tobytes()).decode(), "shape": list(mel.shape)},
        "format": audio_format,
    }
    if model["speakers"]:
        body["speaker"] = 0
    return json.dumps(body).encode(), frames


async def load_test(url: str, options: dict, api_key: str | None = None) -> dict:
    """The whole report. `options`: concurrency (list), requests_per_level, seconds,
    overload (0: no overload phase), max_seconds, timeout, format."""
    base_url = check_loopback(url)
    deadline = time.monotonic() + options["max_seconds"]
    connections = max([*options["concurrency"], options["overload"]]) + 1
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=options["timeout"],
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    ) as client:
        model = await describe_service(client)
        body, frames = request_body(model, options["seconds"], options["format"])
        audio_s = frames * model["spec"]["hop_length"] / model["spec"]["sample_rate"]
        report: dict = {
            "url": base_url,
            "model": {key: model[key] for key in ("name", "kind", "device", "sample_rate")},
            "audio_seconds_per_request": audio_s,
            "format": options["format"],
            "levels": [],
            "skipped_levels": [],
        }
        for concurrency in options["concurrency"]:
            if time.monotonic() >= deadline:
                report["skipped_levels"].append(concurrency)
                continue
            count = max(options["requests_per_level"], concurrency)
            start = time.perf_counter()
            outcomes = await run_level(client, body, concurrency, count, deadline)
            level = {"concurrency": concurrency}
            level |= summarise(outcomes, time.perf_counter() - start, audio_s)
            level["stopped_early"] = len(outcomes) < count
            report["levels"].append(level)
        report["overload"] = None
        if options["overload"] and time.monotonic() < deadline:
            report["overload"] = await overload(client, body, options["overload"], audio_s)
        elif options["overload"]:
            report["skipped_overload"] = True
    return report


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:,.0f}"


def _errors(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in counts.items()) or "0"


def format_table(report: dict) -> str:
    """Markdown: one row per concurrency level, then the overload phase in words."""
    model = report["model"]
    lines = [
        f"{report['url']}: {model['name']} ({model['kind']}) on {model['device']}, "
        f"{report['audio_seconds_per_request']:g} s of audio per request, {report['format']}",
        "",
        "| concurrency | requests | served | errors | p50 ms | p95 ms | p99 ms | requests/s "
        "| audio s/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level in report["levels"]:
        latency = level["latency_s"]
        lines.append(
            f"| {level['concurrency']} | {level['requests']} | {level['served']} | "
            f"{_errors(level['errors'])} | {_milliseconds(latency['p50'])} | "
            f"{_milliseconds(latency['p95'])} | {_milliseconds(latency['p99'])} | "
            f"{level['requests_per_s']:,.2f} | {level['audio_seconds_per_s']:,.2f} |"
        )
    if report["skipped_levels"]:
        skipped = ", ".join(str(level) for level in report["skipped_levels"])
        lines.append(f"\nConcurrency {skipped} skipped: the time budget (--max-seconds) ran out.")
    lines.append("")
    lines.append(_overload_line(report))
    return "\n".join(lines)


def _overload_line(report: dict) -> str:
    result = report["overload"]
    if result is None:
        if report.get("skipped_overload"):
            return "Overload: skipped, the time budget (--max-seconds) ran out."
        return "Overload: not run (--overload 0)."
    retry = f" (Retry-After {result['retry_after']} s)" if result["retry_after"] else ""
    recovery = result["recovery"]
    after = (
        f"recovered: the next request alone was served in {_milliseconds(recovery['latency_s'])} ms"
        if recovery["recovered"]
        else f"NOT recovered: the next request alone got {recovery['status']}"
    )
    refused = f"{result['rejected']} refused with 503{retry}"
    others = {status: n for status, n in result["errors"].items() if status != "503"}
    other = f", other errors: {_errors(others)}" if others else ""
    line = f"Overload: {result['requests']} requests at once: {result['served']} served, "
    line += f"{refused}{other}; {after}."
    if "note" in result:
        line += f" Note: {result['note']}."
    return line


def run(args) -> dict:
    """Entry point of `wavenet bench-service`: prints a table (or JSON) and writes JSON."""
    options = {
        "concurrency": args.concurrency,
        "requests_per_level": args.requests_per_level,
        "seconds": args.seconds,
        "overload": args.overload,
        "max_seconds": args.max_seconds,
        "timeout": args.timeout,
        "format": args.format,
    }
    report = asyncio.run(load_test(args.url, options, args.api_key))
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report
