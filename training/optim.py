"""Learning-rate schedule and the exponential moving average of weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_copy", "learning_rate", "update_ema"]


def learning_rate(
    step: int, peak: float, warmup_steps: int, half_life: int, floor: float = 0.0
) -> float:
    """Linear warm-up, then exponential decay.

    lr(s) = peak * (s + 1) / warmup                       for s < warmup
    lr(s) = max(floor, peak * 0.5 ** ((s - warmup) / half_life))   afterwards

    Args:
        step (int): Updates done so far (0 for the first).
        peak (float): Rate at the end of warm-up.
        warmup_steps (int): Length of the warm-up; 0 for none.
        half_life (int): Steps over which the rate halves after warm-up.
        floor (float): Lowest rate the decay reaches.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return max(floor, peak * 0.5 ** ((step - warmup_steps) / half_life))


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` to hold the averaged weights."""
    return copy.deepcopy(model).requires_grad_(False).eval()


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """average <- d * average + (1 - d) * model, with d = min(decay, (1 + step) / (10 + step)).

    The step-dependent cap keeps the average from clinging to the random initialisation
    early in a run, when `decay` alone would give it weight for thousands of steps.
    """
    rate = min(decay, (1 + step) / (10 + step))
    averaged = list(average.parameters())
    current = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(averaged, current, 1.0 - rate)
    for held, buffer in zip(average.buffers(), model.buffers(), strict=True):
        held.copy_(buffer)
