"""Stopping a training run cleanly on SIGINT or SIGTERM: finish the step, checkpoint, exit.

Ctrl-C, `kill`, `docker stop` and a Kubernetes eviction all send one of the two signals.
While a run trains, the first one only raises a flag; the loop checks it after each step,
saves the checkpoint (so `--resume` continues from that very step) and exits with status
128 + the signal's number, as a shell reports a process killed by it. A second signal acts
as it normally would, for a run that must die at once. Under DDP the ranks agree on the
flag every step, so all of them stop after the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["StopRequest", "stop_requests"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The signal asked to stop the run, if one has arrived."""

    def __init__(self) -> None:
        self.signal: int = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.signal = signum
        for number in SIGNALS:  # the next signal stops the process at once
            signal.signal(
                number, signal.SIG_DFL if number == signal.SIGTERM else signal.default_int_handler
            )


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM while the body runs (only the main thread can; elsewhere
    the request never fires), and restore the previous handlers after."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request) for number in SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
