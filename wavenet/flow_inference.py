"""A student flow evaluated for generation: its convolutions as matrix products on one buffer.

`FlowWaveNet.forward` is the reference: differentiable, one (B, C, T) convolution per layer.
Generation needs no gradients, so `PreparedFlow` computes the same (mu, log s) with fewer
passes over memory (profiled on CPU: `Student.stream` uses it there):

- The batch is folded into time: the residual stream is one (C, B * (pad + T)) buffer in
  which each item follows `pad` zero columns, its causal past. Each tap of a dilated
  convolution and each 1x1 convolution is then one matrix product over the whole batch,
  with no padded copy of the input per layer.
- The gate uses tanh(a) = 2 sigmoid(2 a) - 1: one in-place sigmoid over both halves (the
  filter rows of the weights are doubled once, when the flow is prepared), then
  z / 2 = (sigmoid(2 a) - 1/2) sigmoid(b); the factor 2 is folded into the 1x1 weights.
- Frame-rate conditioning is added by broadcasting each frame over its hop; the excitation e
  (a pitch-aware flow) is laid out once like the stream and each layer adds its share with
  one matrix product (U_layer e, filter rows doubled).
- Sums accumulate in place: skips += W_skip z; h = sqrt(1/2) (h + W_res z + b_res).
- A large batch runs in groups of items whose buffers fit `PASS_BYTES`, so that each pass
  works in cache (items are independent, so grouping changes no output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PASS_BYTES",
    "PreparedBlock",
    "PreparedFlow",
    "add_gate_conditioning",
    "dilated_conv",
    "prepare_flow",
    "sample_flows",
]

SQRT_HALF = math.sqrt(0.5)
# Working buffers of one pass. At 4 MiB they stay in the 8 MiB L3 cache of the 2-core
# development machine: there, batch 16 in groups that fit ran 1.2x faster than in one pass.
PASS_BYTES = 4 << 20


@dataclass
class PreparedBlock:
    """One gated residual block's weights, arranged for `PreparedFlow`.

    Attributes:
        taps (list[Tensor]): The dilated convolution's weight at each tap (2 * gate, C),
            filter rows doubled, oldest tap first.
        bias (Tensor): Its bias (2 * gate, 1), filter rows doubled.
        dilation (int): Spacing of the taps.
        context (int): (taps - 1) * dilation: how far back the oldest tap reaches.
        skip_weight (Tensor): 2 W_skip (skip, gate).
        residual_weight (Tensor | None): 2 sqrt(1/2) W_res (C, gate); None for a last block.
        residual_bias (Tensor | None): sqrt(1/2) b_res (C, 1).
        excitation_weight (Tensor | None): The layer's share of the excitation projection
            (2 * gate, 2H + 1), filter rows doubled; None for a mel-only flow.
    """

    taps: list[torch.Tensor]
    bias: torch.Tensor
    dilation: int
    context: int
    skip_weight: torch.Tensor
    residual_weight: torch.Tensor | None
    residual_bias: torch.Tensor | None
    excitation_weight: torch.Tensor | None = None


@dataclass
class PreparedFlow:
    """A flow's weights, arranged once per generation call; called like `FlowWaveNet`.

    Attributes:
        input_weight (Tensor): The input 1x1 convolution's weight (C, 1, 1).
        input_bias (Tensor): Its bias (C, 1, 1).
        blocks (list[PreparedBlock]): The residual blocks.
        skip_bias (Tensor): Sum of the blocks' skip biases (skip, 1).
        output_weight (Tensor): The (mu, log s) head (2, skip).
        output_bias (Tensor): Its bias (2, 1).
        gate_channels (int): Width of each half of the gated unit.
    """

    input_weight: torch.Tensor
    input_bias: torch.Tensor
    blocks: list[PreparedBlock]
    skip_bias: torch.Tensor
    output_weight: torch.Tensor
    output_bias: torch.Tensor
    gate_channels: int

    def bytes_per_sample(self, dtype: torch.dtype) -> int:
        """Bytes of working buffers per sample of one item (stream, gates, skips, head, e)."""
        rows = self.input_weight.shape[0] + 2 * self.gate_channels + self.skip_bias.shape[0] + 2
        excitation_weight = self.blocks[0].excitation_weight
        rows += 0 if excitation_weight is None else excitation_weight.shape[1]
        return rows * torch.empty((), dtype=dtype).element_size()

    @torch.no_grad()
    def __call__(
        self, x: torch.Tensor, cond: torch.Tensor, excitation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) -> mu (B, T), log_s (B, T), as `FlowWaveNet.forward` computes them.

        cond is (B, layers * 2 * gate, T or F): every layer's conditioning, stacked;
        excitation is e (B, 2H + 1, T) for a pitch-aware flow, None for a mel-only one.
        """
        pitch_aware = self.blocks[0].excitation_weight is not None
        if (excitation is None) == pitch_aware:
            raise ValueError("a pitch-aware flow needs the excitation e, a mel-only one none")
        batch, length = x.shape
        pad = max(block.context for block in self.blocks)
        span = pad + length
        width = batch * span
        live = width - pad  # columns from the first item's first sample to the end
        channels, gate = self.input_weight.shape[0], self.gate_channels
        items = x.new_empty(channels, batch, span)
        items[:, :, :pad].zero_()
        # The input 1x1 convolution of x shifted right by one step (its first input is 0).
        items[:, :, pad].copy_(self.input_bias[:, :, 0])
        torch.addcmul(self.input_bias, self.input_weight, x[:, :-1], out=items[:, :, pad + 1 :])
        stream = items.view(channels, width)
        gates = x.new_empty(2 * gate, width)
        skips = x.new_zeros(self.skip_bias.shape[0], live)
        layer_conds = cond.chunk(len(self.blocks), dim=1)
        out = gates[:, pad:]
        e_stream = None if excitation is None else _lay_out(excitation.to(x.dtype), pad)
        for block, layer_cond in zip(self.blocks, layer_conds, strict=True):
            # Two products of `gate` rows each, not one of 2 * gate: measured faster on CPU.
            for rows in (slice(0, gate), slice(gate, 2 * gate)):
                dilated_conv(block, stream, out[rows], pad, rows)
            add_gate_conditioning(gates.view(2 * gate, batch, span)[:, :, pad:], layer_cond)
            if e_stream is not None:
                out.addmm_(block.excitation_weight, e_stream[:, pad:])
            torch.sigmoid_(out)
            half_z = out[:gate].sub_(0.5).mul_(out[gate:])
            skips.addmm_(block.skip_weight, half_z)
            if block.residual_weight is not None:
                residual = stream[:, pad:]
                residual.addmm_(block.residual_weight, half_z, beta=SQRT_HALF)
                residual.add_(block.residual_bias)
                items[:, :, :pad].zero_()  # each item's past got its predecessor's last columns
        skips.add_(self.skip_bias).relu_()
        head = x.new_empty(2, width)
        torch.addmm(self.output_bias, self.output_weight, skips, out=head[:, :live])
        mu, log_s = head.view(2, batch, span)[:, :, :length]
        return mu, log_s


def _lay_out(e: torch.Tensor, pad: int) -> torch.Tensor:
    """e (B, E, T) as one (E, B * (pad + T)) buffer, each item after `pad` zero columns, the
    residual stream's layout."""
    batch, channels, length = e.shape
    laid = e.new_zeros(channels, batch, pad + length)
    laid[:, :, pad:] = e.transpose(0, 1)
    return laid.view(channels, -1)


@torch.no_grad()
def sample_flows(
    flows: Sequence[PreparedFlow],
    z: torch.Tensor,
    conds: Sequence[torch.Tensor],
    log_scale_min: float,
    excitation: torch.Tensor | None = None,
    source: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The student's x (B, T) from noise z (B, T): x <- x * s_k + mu_k through every flow.

    Args:
        flows (Sequence[PreparedFlow]): The flows, first to last.
        z (Tensor): Logistic noise (B, T).
        conds (Sequence[Tensor]): Each flow's stacked conditioning (B, channels, T or F).
        log_scale_min (float): Floor of each flow's log s_k (not of the source's, which is
            set, not learned).
        excitation (Tensor | None): e (B, 2H + 1, T), read by every flow of a pitch-aware
            student.
        source (tuple | None): (mu_src, log_s_src), each (B, T): a first affine step before
            the flows, for a student with a source.
    """
    per_item = max(flow.bytes_per_sample(z.dtype) for flow in flows) * z.shape[-1]
    group = max(1, PASS_BYTES // per_item)
    parts = []
    for start in range(0, z.shape[0], group):
        items = slice(start, start + group)
        x = z[items]
        if source is not None:
            shift, log_scale = source
            x = torch.addcmul(shift[items], x, log_scale[items].exp())  # set, not floored
        e = None if excitation is None else excitation[items]
        for flow, cond in zip(flows, conds, strict=True):
            mu, log_s = flow(x, cond[items], e)
            x = torch.addcmul(mu, x, log_s.clamp_(min=log_scale_min).exp_())
        parts.append(x)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def dilated_conv(
    block: PreparedBlock, stream: torch.Tensor, out: torch.Tensor, pad: int, rows: slice
) -> None:
    """out = rows `rows` of the block's causal dilated convolution of `stream`, column by column.

    Args:
        block (PreparedBlock): Weights.
        stream (Tensor): Residual stream (C, width); column c's past is the columns before it.
        out (Tensor): Output (len(rows), width - pad) for stream columns pad, pad + 1, ....
        pad (int): Columns before the first output column; at least `block.context`.
        rows (slice): Output channels to compute.
    """
    live = out.shape[-1]
    start = pad - block.context
    torch.addmm(block.bias[rows], block.taps[0][rows], stream[:, start : start + live], out=out)
    for index, tap in enumerate(block.taps[1:], start=1):
        offset = start + index * block.dilation
        out.addmm_(tap[rows], stream[:, offset : offset + live])


def add_gate_conditioning(gates: torch.Tensor, cond: torch.Tensor) -> None:
    """Add a layer's conditioning to its gate pre-activations in place, doubling the filter half.

    Args:
        gates (Tensor): Pre-activations (2 * gate, B, T), filter rows first (already doubled).
        cond (Tensor): (B, 2 * gate, T), or (B, 2 * gate, F) with T = F * hop, each frame held
            for hop steps (broadcast, never materialised at sample rate).
    """
    channels, batch, length = gates.shape
    frames = cond.shape[-1]
    by_channel = cond.transpose(0, 1)  # (2 * gate, B, F or T)
    if frames != length:
        if length % frames:
            raise ValueError(f"{length} steps cannot hold {frames} conditioning frames evenly")
        gates = gates.view(channels, batch, frames, length // frames)
        by_channel = by_channel.unsqueeze(-1)
    half = channels // 2
    gates[:half].add_(by_channel[:half], alpha=2.0)
    gates[half:].add_(by_channel[half:])


@torch.no_grad()
def prepare_flow(flow: nn.Module) -> PreparedFlow:
    """Arrange a `FlowWaveNet`'s weights for `PreparedFlow` (cheap: a few small tensors)."""
    blocks = []
    if flow.excitation is not None:  # every layer's rows, stacked in layer order
        excitations = flow.excitation.weight[:, :, 0].chunk(len(flow.blocks))
    for index, block in enumerate(flow.blocks):
        conv = block.conv
        gate = conv.out_channels // 2
        doubling = torch.ones(2 * gate, 1, dtype=conv.weight.dtype, device=conv.weight.device)
        doubling[:gate] = 2.0
        residual_weight = residual_bias = None
        if block.residual is not None:
            residual_weight = 2 * SQRT_HALF * block.residual.weight[:, :, 0]
            residual_bias = SQRT_HALF * block.residual.bias[:, None]
        excitation_weight = None
        if flow.excitation is not None:
            excitation_weight = doubling * excitations[index]
        blocks.append(
            PreparedBlock(
                taps=[doubling * conv.weight[:, :, tap] for tap in range(conv.kernel_size[0])],
                bias=doubling * conv.bias[:, None],
                dilation=conv.dilation[0],
                context=conv.context,
                skip_weight=2.0 * block.skip.weight[:, :, 0],
                residual_weight=residual_weight,
                residual_bias=residual_bias,
                excitation_weight=excitation_weight,
            )
        )
    return PreparedFlow(
        input_weight=flow.input.weight,
        input_bias=flow.input.bias[:, None, None],
        blocks=blocks,
        skip_bias=sum(block.skip.bias for block in flow.blocks)[:, None],
        output_weight=flow.output.weight[:, :, 0],
        output_bias=flow.output.bias[:, None],
        gate_channels=flow.blocks[0].conv.out_channels // 2,
    )
