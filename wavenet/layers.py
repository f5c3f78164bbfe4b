"""Building blocks shared by the teacher, the student flows and the classifier.

Every module works on (batch, channels, time) tensors. The causal convolution and the gated
residual block have one code path for both modes: a whole sequence at once, or one time step
(time = 1) with a `ConvQueue` holding the inputs the convolution still needs (Fast WaveNet).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CausalConv1d",
    "Conditioner",
    "ConditioningUpsampler",
    "ConvQueue",
    "GatedResidualBlock",
    "add_conditioning",
    "receptive_field",
    "shift_right",
]


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Samples a stack of causal convolutions sees: 1 + (kernel_size - 1) * sum(dilations)."""
    return 1 + (kernel_size - 1) * sum(dilations)


def shift_right(x: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """Delay a (B, C, T) sequence by `steps`, zero-filling the start: out[t] = x[t - steps]."""
    return F.pad(x, (steps, 0))[..., : x.shape[-1]]


def add_conditioning(h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Add conditioning to a sequence, broadcasting it when it runs at a lower rate.

    Args:
        h (Tensor): Sequence (B, C, T).
        cond (Tensor): (B, C, T), or (B, C, F) with T = F * r, held for r steps each
            (frame-rate conditioning added without materialising its upsampled copy).

    Returns:
        Tensor: (B, C, T).
    """
    if cond.shape[-1] == h.shape[-1]:
        return h + cond
    batch, channels, length = h.shape
    frames = cond.shape[-1]
    if length % frames:
        raise ValueError(f"{length} steps cannot hold {frames} conditioning frames evenly")
    held = h.view(batch, channels, frames, length // frames) + cond.unsqueeze(-1)
    return held.view(batch, channels, length)


@dataclass
class ConvQueue:
    """The last `(kernel_size - 1) * dilation` inputs of one causal convolution.

    A ring buffer: slot `position` holds the oldest input, so one step reads the taps it needs
    and overwrites one slot, O(kernel_size) work however large the dilation.

    Attributes:
        buffer (Tensor): Past inputs (B, in_channels, context), zeros before the sequence starts.
        position (int): Slot of the oldest input.
    """

    buffer: torch.Tensor
    position: int = 0


class CausalConv1d(nn.Conv1d):
    """Dilated convolution whose output at t depends only on inputs at t and before.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Taps, spaced `dilation` samples apart.
        dilation (int): Spacing of the taps.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.context = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (Tensor): Input (B, in_channels, T). Returns (B, out_channels, T)."""
        return super().forward(F.pad(x, (self.context, 0)))

    def new_queue(self, batch_size: int, device=None, dtype=None) -> ConvQueue:
        """An empty queue for incremental steps (the past is zeros, as in `forward`)."""
        buffer = torch.zeros(batch_size, self.in_channels, self.context, device=device, dtype=dtype)
        return ConvQueue(buffer)

    def step(self, x: torch.Tensor, queue: ConvQueue) -> torch.Tensor:
        """One time step: x (B, in_channels, 1) -> (B, out_channels, 1); updates `queue`."""
        batch = x.shape[0]
        if self.context == 0:
            taps = x
        else:
            width = self.context
            dilation = self.dilation[0]
            slots = [
                (queue.position + j * dilation) % width for j in range(self.kernel_size[0] - 1)
            ]
            taps = torch.cat([queue.buffer[:, :, slots], x], dim=2)
            queue.buffer[:, :, queue.position] = x[:, :, 0]
            queue.position = (queue.position + 1) % width
        # weight (out, in, k) flattens in-major, k-minor, as does taps (B, in, k).
        out = F.linear(
            taps.reshape(batch, -1), self.weight.reshape(self.out_channels, -1), self.bias
        )
        return out.unsqueeze(-1)


class GatedResidualBlock(nn.Module):
    """WaveNet residual block: z = tanh(W_f * x + V_f c) * sigmoid(W_g * x + V_g c).

    The conditioning c arrives already projected to 2 * gate_channels (filter half first), so
    the caller can compute every layer's projection at frame rate in one matmul.

    Args:
        residual_channels (int): Channels of the residual stream.
        gate_channels (int): Channels of each half of the gated unit.
        skip_channels (int): Channels of the skip output.
        kernel_size (int): Taps of the dilated convolution.
        dilation (int): Dilation of the convolution.
        residual (bool): False for the last block of a stack, whose residual output nothing
            reads: it then has no residual projection (no unused parameters).
    """

    def __init__(
        self,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        residual: bool = True,
    ):
        super().__init__()
        self.conv = CausalConv1d(residual_channels, 2 * gate_channels, kernel_size, dilation)
        self.residual = nn.Conv1d(gate_channels, residual_channels, 1) if residual else None
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        queue: ConvQueue | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the block to a sequence, or to one step when `queue` is given.

        Args:
            x (Tensor): Residual stream (B, residual_channels, T); T = 1 with a queue.
            cond (Tensor | None): Projected conditioning (B, 2 * gate_channels, T), or at a
                lower rate (B, 2 * gate_channels, F) to be held for T / F steps each.
            queue (ConvQueue | None): Past inputs of the dilated conv, for one-step mode.

        Returns:
            tuple: Residual output (B, residual_channels, T) and skip (B, skip_channels, T).
        """
        h = self.conv(x) if queue is None else self.conv.step(x, queue)
        if cond is not None:
            h = add_conditioning(h, cond)
        filt, gate = h.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        if self.residual is None:
            return x, self.skip(z)
        # sqrt(1/2) keeps the residual stream's variance from growing with depth.
        return (x + self.residual(z)) * math.sqrt(0.5), self.skip(z)


class ConditioningUpsampler(nn.Module):
    """Upsample frame-rate features by `hop_length` with one learned interpolation kernel.

    A transposed convolution with stride hop and kernel 2 * hop, shared by every channel: each
    output sample mixes the two nearest frames. It starts as linear interpolation between frame
    centres (frame i is centred on samples [i * hop, (i + 1) * hop)). Because it acts on each
    channel alike, it commutes with 1x1 projections, so those can run at frame rate.
    """

    def __init__(self, hop_length: int):
        super().__init__()
        self.hop_length = hop_length
        self.padding = hop_length // 2
        centre = (hop_length - 1) / 2 + self.padding
        taps = torch.arange(2 * hop_length, dtype=torch.float32)
        self.kernel = nn.Parameter(torch.clamp(1 - (taps - centre).abs() / hop_length, min=0))

    def forward(
        self, frames: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Upsample frames [start, stop) to samples [start * hop, stop * hop).

        Args:
            frames (Tensor): Frame-rate features (B, C, F).
            start (int): First frame whose samples are wanted.
            stop (int | None): One past the last frame wanted; F when None.

        Returns:
            Tensor: (B, C, (stop - start) * hop_length), equal to the same samples of the
            whole sequence upsampled at once (only frames start-1 .. stop reach them).
        """
        batch, channels, num_frames = frames.shape
        stop = num_frames if stop is None else min(stop, num_frames)
        first = max(start - 1, 0)
        last = min(stop + 1, num_frames)
        window = frames[:, :, first:last].reshape(batch * channels, 1, last - first)
        out = F.conv_transpose1d(
            window, self.kernel.view(1, 1, -1), stride=self.hop_length, padding=self.padding
        )
        offset = (start - first) * self.hop_length
        out = out[:, :, offset : offset + (stop - start) * self.hop_length]
        return out.reshape(batch, channels, -1)


class Conditioner(nn.Module):
    """Mel frames and an optional speaker to per-layer gate conditioning at sample rate.

    A small convolutional encoder gives each frame some context; one 1x1 projection makes
    every layer's conditioning at frame rate (cheap: hop times fewer positions); the
    upsampler brings it to sample rate. The speaker embedding is projected once per utterance
    and broadcast over time.

    Args:
        n_mels (int): Mel bands of the input.
        hidden_channels (int): Width of the frame-rate encoder.
        out_channels (int): Total conditioning channels (layers * 2 * gate_channels).
        hop_length (int): Samples per frame.
        encoder_layers (int): Convolutions in the frame-rate encoder.
        encoder_kernel_size (int): Their kernel size (odd; centred, looks ahead and back).
        n_speakers (int): Speakers known to the model; 0 for a single-speaker model.
        speaker_dim (int): Size of the speaker embedding.
        interpolate (bool): Whether `upsample` is used (False when the model adds the
            frame-rate conditioning by holding each frame for hop samples).
    """

    def __init__(
        self,
        n_mels: int,
        hidden_channels: int,
        out_channels: int,
        hop_length: int,
        encoder_layers: int = 2,
        encoder_kernel_size: int = 3,
        n_speakers: int = 0,
        speaker_dim: int = 16,
        interpolate: bool = True,
    ):
        super().__init__()
        if encoder_kernel_size % 2 != 1:
            raise ValueError(f"encoder_kernel_size must be odd, got {encoder_kernel_size}")
        padding = encoder_kernel_size // 2
        encoder: list[nn.Module] = []
        channels = n_mels
        for _ in range(encoder_layers):
            encoder += [nn.Conv1d(channels, hidden_channels, encoder_kernel_size, padding=padding)]
            encoder += [nn.LeakyReLU(0.2)]
            channels = hidden_channels
        self.encoder = nn.Sequential(*encoder)
        self.projection = nn.Conv1d(channels, out_channels, 1)
        self.upsampler = ConditioningUpsampler(hop_length) if interpolate else None
        self.speaker_embedding = nn.Embedding(n_speakers, speaker_dim) if n_speakers else None
        self.speaker_projection = nn.Linear(speaker_dim, out_channels) if n_speakers else None
        self.n_speakers = n_speakers

    def project(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        mel_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame-rate conditioning (B, out_channels, F) and speaker bias (B, out_channels, 1).

        With `mel_lengths` (B,), the real frames of each item of a zero-padded batch, each
        item is encoded on its own frames and zeros follow, so that it is conditioned exactly
        as if it were alone (the encoder looks a few frames ahead).
        """
        bias = self.speaker_bias(speaker)
        if mel_lengths is None:
            return self.projection(self.encoder(mel)), bias
        items = [
            F.pad(
                self.projection(self.encoder(mel[index : index + 1, :, :length])),
                (0, mel.shape[-1] - length),
            )
            for index, length in enumerate(mel_lengths.tolist())
        ]
        return torch.cat(items), bias

    def speaker_bias(self, speaker: torch.Tensor | None) -> torch.Tensor | None:
        """Projected speaker embedding (B, out_channels, 1), or None without a speaker."""
        if speaker is None:
            return None
        if self.speaker_embedding is None:
            raise ValueError("this model has no speakers, but a speaker was given")
        if speaker.dim() != 1 or speaker.min() < 0 or speaker.max() >= self.n_speakers:
            raise ValueError(
                f"speaker ids must be (B,) in [0, {self.n_speakers}), got {speaker.tolist()}"
            )
        return self.speaker_projection(self.speaker_embedding(speaker)).unsqueeze(-1)

    def upsample(
        self,
        frames: torch.Tensor,
        bias: torch.Tensor | None,
        start: int = 0,
        stop: int | None = None,
    ) -> torch.Tensor:
        """Sample-rate conditioning for frames [start, stop): (B, out_channels, samples)."""
        if self.upsampler is None:
            raise RuntimeError("this conditioner was built without an upsampler")
        cond = self.upsampler(frames, start, stop)
        return cond if bias is None else cond + bias

    def forward(self, mel: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """mel (B, n_mels, F), speaker (B,) or None -> (B, out_channels, F * hop_length)."""
        return self.upsample(*self.project(mel, speaker))
