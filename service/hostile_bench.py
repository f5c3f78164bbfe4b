"""`wavenet bench-service --hostile`: the clients of `service.hostile`, one case at a time.

For each case: what the hostile client got against what a well-behaved service answers, the
server's resident memory growth while it ran (the peak of `process_resident_memory_bytes`
sampled from /metrics every 50 ms, over its value before), and whether a well-formed request
sent 0.3 s into the case was served within 5 s. Last, how many 5xx responses /metrics counted
over the whole run. Loopback only, every case bounded in bytes and seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from service import hostile
from service.loadtest import check_loopback, describe_service, request_body

__all__ = ["format_hostile_table", "hostile_test", "run_hostile"]

SERVED_WITHIN_S = 5.0
SAMPLE_EVERY_S = 0.05


def cases(hold_s: float, has_key: bool) -> list[tuple[str, str, Callable]]:
    """(name, expected answer, client) of each case; a client takes a `hostile.Target`."""
    listed = [
        ("upload at 8001 Hz, 16 kB", "200", lambda t: hostile.odd_rate_upload(t, 8001, 8000)),
        ("upload at 44101 Hz, 0.1 s", "200", lambda t: hostile.odd_rate_upload(t, 44101, 4410)),
        ("upload at 2147483647 Hz", "422", lambda t: hostile.odd_rate_upload(t, 2**31 - 1, 100)),
        ("10 bodies cut short", "none", lambda t: hostile.cut_short_bodies(t, 10)),
        ("200 half-sent heads", "408 or closed", lambda t: _half_sent(t, hold_s)),
        ("16 MB JSON, Content-Length", "413", lambda t: hostile.json_amplification(t, 16)),
        ("16 MB JSON, chunked", "413", lambda t: hostile.json_amplification(t, 16, False)),
        ("4 x 16 MB JSON at once", "413", _four_at_once),
        ("64 MB header", "431", lambda t: hostile.huge_header(t, 64)),
        ("64 MB chunked body", "413", lambda t: hostile.endless_chunked_body(t, 64)),
        ("slow body", "408", lambda t: hostile.slow_body(t, hold_s)),
    ]
    if has_key:
        listed.append(("8 MB upload without the key", "401", hostile.unauthenticated_upload))
    return listed


async def _four_at_once(target: hostile.Target) -> list[hostile.Reply]:
    clients = [hostile.json_amplification(target, 16, declared=False) for _ in range(4)]
    return list(await asyncio.gather(*clients))


def _half_sent(target: hostile.Target, hold_s: float) -> Awaitable[list[hostile.Reply]]:
    return hostile.half_sent_requests(target, count=200, hold_s=hold_s)


def got(result: hostile.Reply | list[hostile.Reply]) -> str:
    """What the client(s) got: statuses, "closed" (closed without an answer), "none"."""
    replies = result if isinstance(result, list) else [result]
    counts: dict[str, int] = {}
    for reply in replies:
        key = str(reply.status) if reply.status else ("closed" if reply.closed else "none")
        counts[key] = counts.get(key, 0) + 1
    if len(replies) == 1:
        return next(iter(counts))
    return ", ".join(f"{count} x {key}" for key, count in sorted(counts.items()))


def as_expected(answer: str, expected: str) -> bool:
    """Whether every reply was one of the expected answers."""
    allowed = set(expected.replace(" or ", " ").split())
    return all(part.split(" x ")[-1] in allowed for part in answer.split(", "))


async def resident_bytes(client: httpx.AsyncClient, metrics_url: str) -> float | None:
    """The server's resident memory by its /metrics, or None if it does not say."""
    with contextlib.suppress(httpx.HTTPError):
        for line in (await client.get(metrics_url, timeout=2.0)).text.splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return float(line.split()[1])
    return None


async def server_errors(client: httpx.AsyncClient, metrics_url: str) -> float | None:
    """5xx responses the server counted so far, or None without /metrics."""
    with contextlib.suppress(httpx.HTTPError):
        text = (await client.get(metrics_url, timeout=2.0)).text
        rows = [line for line in text.splitlines() if line.startswith("http_requests_total{")]
        return sum(float(line.split()[-1]) for line in rows if 'status="5xx"' in line)
    return None


async def run_case(
    client: httpx.AsyncClient, metrics_url: str, body: bytes, case: Awaitable
) -> tuple[object, float | None, dict]:
    """Run `case` with a memory sampler and a well-formed request beside it."""
    before = await resident_bytes(client, metrics_url)
    samples: list[float] = []

    async def sample() -> None:
        while True:
            value = await resident_bytes(client, metrics_url)
            if value is not None:
                samples.append(value)
            await asyncio.sleep(SAMPLE_EVERY_S)

    async def valid() -> dict:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        try:
            response = await client.post("/v1/vocode", content=body, timeout=SERVED_WITHIN_S)
            status = str(response.status_code)
        except httpx.HTTPError as error:
            status = type(error).__name__
        seconds = time.monotonic() - started
        return {"status": status, "seconds": seconds, "in_time": status == "200"}

    sampler = asyncio.ensure_future(sample())
    try:
        result, meanwhile = await asyncio.gather(case, valid())
    finally:
        sampler.cancel()
    growth = None if before is None or not samples else max(max(samples) - before, 0.0)
    return result, growth, meanwhile


async def hostile_test(
    url: str, api_key: str | None, hold_s: float, metrics_url: str | None = None
) -> dict:
    """The whole report; `metrics_url` defaults to the service's own /metrics."""
    base_url = check_loopback(url)
    metrics_url = check_loopback(metrics_url) if metrics_url else f"{base_url}/metrics"
    auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
    parts = urlsplit(base_url)
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30.0) as client:
        model = await describe_service(client)
        body, _ = request_body(model, 0.1, "wav")
        client.headers["content-type"] = "application/json"
        keyless = await client.get("/v1/models", headers={"authorization": ""})
        target = hostile.Target(
            parts.hostname, parts.port or 80, auth, model["spec"]["n_mels"], model["max_frames"]
        )
        errors_before = await server_errors(client, metrics_url)
        rows = []
        for name, expected, make in cases(hold_s, keyless.status_code == 401):
            result, growth, meanwhile = await run_case(client, metrics_url, body, make(target))
            answer = got(result)
            rows.append(
                {
                    "case": name,
                    "expected": expected,
                    "got": answer,
                    "ok": as_expected(answer, expected) and meanwhile["in_time"],
                    "rss_growth_mb": None if growth is None else growth / 2**20,
                    "valid_request": meanwhile,
                }
            )
        errors_after = await server_errors(client, metrics_url)
    new_errors = None if errors_before is None else errors_after - errors_before
    return {"url": base_url, "cases": rows, "server_errors": new_errors}


def format_hostile_table(report: dict) -> str:
    """Markdown: one row per case, then the 5xx count."""
    lines = [
        f"{report['url']}: hostile clients",
        "",
        "| case | expected | got | RSS growth MB | valid request meanwhile | ok |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["cases"]:
        growth = "-" if row["rss_growth_mb"] is None else f"{row['rss_growth_mb']:,.0f}"
        valid = row["valid_request"]
        meanwhile = f"{valid['status']} in {valid['seconds']:.2f} s"
        ok = "yes" if row["ok"] else "NO"
        lines.append(
            f"| {row['case']} | {row['expected']} | {row['got']} | {growth} | {meanwhile} | {ok} |"
        )
    errors = report["server_errors"]
    lines.append("")
    lines.append(
        "5xx responses during the run: unknown (no /metrics)"
        if errors is None
        else f"5xx responses during the run: {errors:.0f}"
    )
    return "\n".join(lines)


def run_hostile(args) -> dict:
    """Entry point of `wavenet bench-service --hostile`: prints a table (or JSON), writes JSON."""
    report = asyncio.run(hostile_test(args.url, args.api_key, args.hold_seconds, args.metrics_url))
    print(json.dumps(report, indent=2) if args.json else format_hostile_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report
