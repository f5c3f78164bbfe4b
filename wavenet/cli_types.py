"""What the serving and the training halves of the `wavenet` command share.

They live here rather than in `wavenet.cli` so that `training.commands` can use them without
importing the module that imports it, and so that under `python -m wavenet.cli` (as torchrun
runs the training jobs) there is one `CommandError` class, the one `main()` catches.
"""

from __future__ import annotations

import argparse

# The training commands take the device choice from here, with the argparse types.
from wavenet.devices import resolve_device

__all__ = [
    "CommandError",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "resolve_device",
]


class CommandError(Exception):
    """A problem with the command's inputs, reported in one line with exit code 2."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
