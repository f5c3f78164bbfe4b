"""The causal convolution and the gated residual block that every stack is built of.

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

__all__ = ["CausalConv1d", "ConvQueue", "GatedResidualBlock", "add_conditioning", "shift_right"]


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

    V c sums one term per conditioning input (mel frames, a speaker, ...). Each input arrives
    already projected to 2 * gate_channels (filter half first), so the caller can compute
    every layer's projection in one matmul, at the input's own rate (mel frames at frame rate,
    a speaker once per utterance).

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
        conds: Sequence[torch.Tensor] = (),
        queue: ConvQueue | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the block to a sequence, or to one step when `queue` is given.

        Args:
            x (Tensor): Residual stream (B, residual_channels, T); T = 1 with a queue.
            conds (Sequence[Tensor]): Projected conditioning inputs, each added to the gates:
                (B, 2 * gate_channels, T), or at a lower rate (B, 2 * gate_channels, F) to be
                held for T / F steps each.
            queue (ConvQueue | None): Past inputs of the dilated conv, for one-step mode.

        Returns:
            tuple: Residual output (B, residual_channels, T) and skip (B, skip_channels, T).
        """
        h = self.conv(x) if queue is None else self.conv.step(x, queue)
        for cond in conds:
            h = add_conditioning(h, cond)
        filt, gate = h.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)
        if self.residual is None:
            return x, self.skip(z)
        # sqrt(1/2) keeps the residual stream's variance from growing with depth.
        return (x + self.residual(z)) * math.sqrt(0.5), self.skip(z)
