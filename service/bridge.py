"""Waiting on the inference worker from the event loop, without blocking it.

The worker resolves a `concurrent.futures.Future` per job and, for streams, calls back with
each chunk from its own thread; these helpers turn both into awaitables, and cancel the job
when the client goes away so the worker drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

__all__ = ["ChunkStream", "ClientGone", "unless_disconnected", "wait_for_disconnect"]

_END = object()
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its audio was ready."""


async def wait_for_disconnect(receive: Callable[[], Awaitable[dict]]) -> None:
    """Return once the ASGI server reports that the client disconnected."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work: Awaitable[T], disconnected: Awaitable[None]) -> T:
    """The value of `work`; if `disconnected` finishes first, cancel `work`, raise ClientGone.

    Cancelling a future wrapped with `asyncio.wrap_future` cancels the worker's future too.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise ClientGone
    return task.result()


class ChunkStream:
    """The chunks of one streaming job, handed from the worker thread to the event loop.

    Create it in the event loop, pass `put` as the job's `on_chunk`, then `follow` its future.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._items: asyncio.Queue = asyncio.Queue()
        self._future: Future | None = None

    def put(self, chunk: torch.Tensor | object) -> None:
        """Hand over one chunk (samples,); called from the worker thread."""
        # A loop that has closed belongs to a client that is gone: the chunk has no reader.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._items.put_nowait, chunk)

    def follow(self, future: Future) -> None:
        """End the stream when `future` resolves (after every chunk put before it)."""
        self._future = future
        future.add_done_callback(lambda _: self.put(_END))

    async def next(self) -> torch.Tensor | None:
        """The next chunk, or None at the end.

        Raises:
            Exception: whatever made the job fail.
        """
        item = await self._items.get()
        if item is not _END:
            return item
        if self._future is not None and not self._future.cancelled():
            error = self._future.exception()
            if error is not None:
                raise error
        return None
