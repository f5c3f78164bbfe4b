"""Sampling audio from a model inside training jobs: batched, time-budgeted, single-threaded.

Autoregressive sampling runs one network step per sample on a batch of a few clips: each
step is a handful of tiny matrix products, where spreading work over CPU threads costs more
in synchronisation than it saves (and on a machine shared with other jobs, far more).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["single_threaded", "vocode"]


@contextlib.contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run the body with one intra-op CPU thread (no change for GPU work)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def vocode(
    model: nn.Module,
    mels: list[torch.Tensor],
    speakers: list[int | None],
    max_seconds: float = float("inf"),
    seed: int = 0,
    frames_per_chunk: int = 2,
    one_thread: bool = True,
    f0s: list[torch.Tensor] | None = None,
    phases: torch.Tensor | None = None,
) -> list[np.ndarray]:
    """Sample waveforms for several mels in one zero-padded batch, within a time budget.

    Args:
        model (nn.Module): A model with `spec` and `stream(mel, speaker, ...)`, e.g. a Teacher.
        mels (list[Tensor]): Log-mels (n_mels, frames_i).
        speakers (list[int | None]): Speaker id of each clip; any None means no speakers.
        max_seconds (float): Stop after the chunk during which this much time has passed.
        seed (int): Seeds the sampling generator.
        frames_per_chunk (int): Frames made between checks of the budget.
        one_thread (bool): Sample with one CPU thread: right for autoregressive models'
            tiny steps; a parallel student's large passes want every thread.
        f0s (list[Tensor] | None): F0 of each clip (frames_i,), Hz, 0 = unvoiced: for a
            pitch-aware model (zero-padded like the mels).
        phases (Tensor | None): The excitation's initial phase of each clip (B,); None = 0.

    Returns:
        list[ndarray]: Waveform of each clip (frames_i * hop,), or its first part when the
        budget ran out (at least one chunk).
    """
    device = next(model.parameters()).device
    frames = [mel.shape[-1] for mel in mels]
    batch = torch.stack([F.pad(mel, (0, max(frames) - mel.shape[-1])) for mel in mels])
    speaker = None if None in speakers else torch.tensor(speakers, device=device)
    pitch = {}
    if f0s is not None:
        f0 = torch.stack([F.pad(f0, (0, max(frames) - f0.shape[-1])) for f0 in f0s])
        pitch = {"f0": f0.to(device), "phase": None if phases is None else phases.to(device)}
    generator = torch.Generator(device).manual_seed(seed)
    deadline = time.monotonic() + max_seconds
    chunks = []
    with single_threaded(device) if one_thread else contextlib.nullcontext():
        stream = model.stream(
            batch.to(device),
            speaker,
            mel_lengths=torch.tensor(frames),
            frames_per_chunk=frames_per_chunk,
            generator=generator,
            **pitch,
        )
        for chunk in stream:
            chunks.append(chunk.float().cpu())
            if time.monotonic() > deadline:
                break
    made = torch.cat(chunks, dim=-1).numpy()
    hop = model.spec.hop_length
    return [made[index, : min(made.shape[-1], count * hop)] for index, count in enumerate(frames)]
