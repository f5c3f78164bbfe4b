"""A cache for functions that build constant tensors (tables, windows, filterbanks).

`functools.lru_cache` alone keeps whatever the first call made: a table first built while
serving, under `torch.inference_mode`, is an inference tensor, and autograd refuses to save
one for a later backward pass (a training step in the same process, or a held-out score
between training steps). `tensor_cache` builds every entry outside inference mode and
without gradients, so an entry serves both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["tensor_cache"]

F = TypeVar("F", bound=Callable)


def tensor_cache(maxsize: int) -> Callable[[F], F]:
    """`functools.lru_cache(maxsize)` whose entries are built as ordinary constant tensors."""

    def decorate(function: F) -> F:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(function)
        def cached(*args, **kwargs):
            with torch.inference_mode(False), torch.no_grad():
                return function(*args, **kwargs)

        return cached  # type: ignore[return-value]

    return decorate
