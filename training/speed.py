"""Timing on CPU or CUDA, peak memory, and the matmul peak.

A model states its own FLOPs per generated sample (`flops_per_sample`), so its speed can be
set against what the device's matmuls achieve.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch

__all__ = [
    "matmul_peak_gflops",
    "median_seconds",
    "peak_memory_mb",
    "reset_peak_memory",
]

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    run: Callable[[], object], repeats: int, device: torch.device = CPU, warmups: int = 1
) -> float:
    """Median wall time of `run` over `repeats` calls, after `warmups` untimed calls."""
    for _ in range(warmups):
        run()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(
    size: int = 2048,
    repeats: int = 5,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
) -> float:
    """GFLOP/s of one large square matmul: 2 * size^3 FLOPs per product."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats, device) / 1e9


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA memory allocated since the last reset, or the process's
    resident set high-water mark on CPU (`ru_maxrss`, in kB on Linux)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak; the CPU high-water mark of a process cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
