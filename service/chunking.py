"""Streaming for vocoders that make a whole utterance at once (the Parallel WaveNet student).

Such a model has no `stream`; it is streamed by vocoding overlapping windows of frames and
keeping, from each window, only the samples of its own chunk. Every kept sample then sees all
the frames and past samples it would see in one whole-utterance call, so the chunks joined
equal that call (within float tolerance, for deterministic models).

Dependencies, in frames, for a chunk [start, stop):
- back: the sample-level receptive field R reaches ceil((R - 1) / hop) frames into the past,
  and the conditioning of those frames reaches C frames further back;
- ahead: only the conditioning looks ahead, by C frames.

The model states R as `receptive_field` and C as `conditioning_context`. In frames, the
window clipped to the utterance:

    first                     start           stop        last
      |<-------- left -------->|<--- chunk --->|<- right ->|
      |  C  | ceil((R-1)/hop)  |   kept audio  |     C     |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = ["ChunkContext", "chunk_context", "overlapped_chunks"]

Vocoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ChunkContext:
    """Frames a chunk needs around it: `left` before its start, `right` after its end."""

    left: int
    right: int

    def __post_init__(self) -> None:
        if self.left < 0 or self.right < 0:
            raise ValueError(f"context must be >= 0, got left={self.left}, right={self.right}")


def chunk_context(receptive_field: int, hop_length: int, conditioning: int) -> ChunkContext:
    """Context for a model with a causal sample-level receptive field and centred conditioning.

    left = ceil((receptive_field - 1) / hop_length) + conditioning, right = conditioning.

    Args:
        receptive_field (int): Samples (current one included) one output sample depends on.
        hop_length (int): Samples per frame.
        conditioning (int): Frames each side that one frame's conditioning depends on.
    """
    past_frames = math.ceil((receptive_field - 1) / hop_length)
    return ChunkContext(left=past_frames + conditioning, right=conditioning)


def overlapped_chunks(
    vocode: Vocoder,
    mel: torch.Tensor,
    mel_lengths: torch.Tensor,
    hop_length: int,
    chunk_frames: int,
    context: ChunkContext,
) -> Iterator[torch.Tensor]:
    """Vocode `mel` chunk by chunk, each from a window with `context` frames around it.

    Args:
        vocode (Callable): (mel (B, n_mels, W), mel_lengths (B,)) -> audio (B, W * hop_length),
            where each item is valid up to its own length (zero-padded beyond).
        mel (Tensor): Log-mel frames (B, n_mels, F), zero-padded beyond each item's length.
        mel_lengths (Tensor): Real frames of each item (B,), long.
        hop_length (int): Samples per frame.
        chunk_frames (int): Frames of audio per chunk.
        context (ChunkContext): Frames each window adds before and after its chunk.

    Yields:
        Tensor: Audio (B, chunk_frames * hop_length), the last chunk shorter; together
        (B, F * hop_length).
    """
    if chunk_frames <= 0:
        raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
    num_frames = mel.shape[-1]
    for start in range(0, num_frames, chunk_frames):
        stop = min(start + chunk_frames, num_frames)
        first = max(start - context.left, 0)
        last = min(stop + context.right, num_frames)
        # An item that ends before this window still needs one frame to be a valid input;
        # its audio here lies past its end and is never used.
        lengths = (mel_lengths - first).clamp(min=1, max=last - first)
        audio = vocode(mel[..., first:last], lengths)
        offset = (start - first) * hop_length
        yield audio[..., offset : offset + (stop - start) * hop_length]
