"""Choosing the torch device a model runs on, from the name a user gave."""

from __future__ import annotations

import re

import torch

__all__ = ["DEVICE_NAMES", "DeviceError", "resolve_device"]

# What a user may ask for; `cuda:N` picks one of several GPUs.
DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


class DeviceError(ValueError):
    """The device asked for is not a device name, or is not on this machine."""


def resolve_device(name: str, setting: str = "--device") -> torch.device:
    """The device called `name`: auto takes CUDA when there is a GPU, else the CPU.

    Args:
        name (str): auto, cpu, cuda or cuda:N.
        setting (str): How the user gave it (`--device`, `WAVENET_DEVICE`), for the message.

    Raises:
        DeviceError: for another name, or cuda asked for on a machine without it.
    """
    asked = f"{setting} {name}" if setting.startswith("-") else f"{setting}={name}"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    index = _CUDA_INDEX.fullmatch(name)
    if name != "cuda" and index is None:
        raise DeviceError(f"{asked}: not a device; use one of {', '.join(DEVICE_NAMES)}")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{asked} was asked for, but no CUDA device is available (use cpu or auto)"
        )
    if index is not None and int(index.group(1)) >= torch.cuda.device_count():
        raise DeviceError(f"{asked}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)
