"""Overlapped chunking, for vocoders without `stream`, on a deterministic stand-in vocoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from service.chunking import ChunkContext, chunk_context, overlapped_chunks

HOP = 4
RECEPTIVE_FIELD = 7  # samples, the current one included
CONDITIONING = 2  # frames each side


def toy_vocoder(mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """Centred conditioning over +-CONDITIONING frames, then a causal FIR of RECEPTIVE_FIELD.

    Both stages are non-trivial mixtures, so a window with too little context gets different
    samples near its edges. Frames past an item's length are treated as zeros.
    """
    frames = torch.arange(mel.shape[-1])
    mel = mel * (frames < mel_lengths[:, None])[:, None, :]
    smoothed = F.avg_pool1d(
        mel.sum(1, keepdim=True), 2 * CONDITIONING + 1, stride=1, padding=CONDITIONING
    )
    upsampled = smoothed.repeat_interleave(HOP, dim=-1)
    taps = torch.linspace(1.0, 0.2, RECEPTIVE_FIELD).flip(0).view(1, 1, -1)
    return F.conv1d(F.pad(torch.sin(upsampled), (RECEPTIVE_FIELD - 1, 0)), taps)[:, 0]


def test_context_formula():
    context = chunk_context(receptive_field=RECEPTIVE_FIELD, hop_length=HOP, conditioning=2)
    assert context == ChunkContext(left=2 + 2, right=2)  # ceil(6 / 4) = 2 frames of past
    assert chunk_context(receptive_field=1, hop_length=256, conditioning=0) == ChunkContext(0, 0)
    with pytest.raises(ValueError):
        ChunkContext(left=-1, right=0)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3, 5, 40])
def test_chunks_join_to_the_whole_utterance(chunk_frames):
    torch.manual_seed(0)
    mel = torch.randn(3, 5, 17)
    lengths = torch.tensor([17, 11, 4])
    mel[1, :, 11:] = 0
    mel[2, :, 4:] = 0
    context = chunk_context(RECEPTIVE_FIELD, HOP, CONDITIONING)
    chunks = list(overlapped_chunks(toy_vocoder, mel, lengths, HOP, chunk_frames, context))
    assert [c.shape[-1] for c in chunks[:-1]] == [chunk_frames * HOP] * (len(chunks) - 1)
    joined = torch.cat(chunks, dim=-1)
    whole = toy_vocoder(mel, lengths)
    assert joined.shape == whole.shape == (3, 17 * HOP)
    for index, frames in enumerate(lengths.tolist()):
        torch.testing.assert_close(joined[index, : frames * HOP], whole[index, : frames * HOP])


@pytest.mark.parametrize("short", [ChunkContext(3, 2), ChunkContext(4, 1)])
def test_too_little_context_changes_the_audio(short):
    """The check above can fail: one frame less on either side is visible in the output."""
    torch.manual_seed(0)
    mel = torch.randn(1, 5, 12)
    lengths = torch.tensor([12])
    joined = torch.cat(list(overlapped_chunks(toy_vocoder, mel, lengths, HOP, 3, short)), dim=-1)
    assert not torch.allclose(joined, toy_vocoder(mel, lengths))
