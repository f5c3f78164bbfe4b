"""Prometheus metrics of the inference worker, in a registry of their own.

Each app gets its own `CollectorRegistry`, shared with the HTTP metrics of
prometheus-fastapi-instrumentator, so several apps in one process (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

__all__ = ["ServiceMetrics"]

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# Compute seconds per second of audio: below 1 is faster than real time.
REAL_TIME_FACTOR_BUCKETS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)


class ServiceMetrics:
    """Queue depth, batch sizes, audio generated and real-time factor; a `BatchObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes and friends, e.g. for `wavenet bench-service --hostile`.
        ProcessCollector(registry=self.registry)
        self.queue_depth = Gauge(
            "wavenet_queue_depth",
            "Requests waiting for the inference worker.",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "wavenet_batch_size",
            "Requests per inference batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "wavenet_audio_seconds",
            "Seconds of audio generated for requests.",
            registry=self.registry,
        )
        self.real_time_factor = Histogram(
            "wavenet_real_time_factor",
            "Compute seconds per second of audio generated, per batch.",
            buckets=REAL_TIME_FACTOR_BUCKETS,
            registry=self.registry,
        )
        self.cancelled = Counter(
            "wavenet_cancelled_requests",
            "Requests dropped because their client went away (while sending its body, "
            "while queued, or while its audio was made).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "wavenet_rejected_requests",
            "Requests turned away with 503 because the queue was full.",
            registry=self.registry,
        )

    def serve(self, port: int, host: str) -> WSGIServer:
        """Serve these metrics at http://host:port/metrics in a thread; `.shutdown()` stops it."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from `depth` at every scrape."""
        self.queue_depth.set_function(depth)

    def batch_done(self, size: int, audio_seconds: float, compute_seconds: float) -> None:
        """Record one served batch (its batch size last: a reader that sees the new batch
        count also sees the batch's audio seconds and real-time factor)."""
        self.audio_seconds.inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.observe(compute_seconds / audio_seconds)
        self.batch_size.observe(size)

    def job_cancelled(self) -> None:
        """Record a request dropped because its client went away."""
        self.cancelled.inc()
