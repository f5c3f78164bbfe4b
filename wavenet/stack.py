"""A stack of gated residual blocks: the body of the teacher, of each flow, of the classifier.

Its layout (`StackConfig`) fixes the dilations, the receptive field and the conditioning the
stack reads; every model that has a stack asks it, so each of these facts is written once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from wavenet.layers import ConvQueue, GatedResidualBlock

__all__ = ["ResidualStack", "StackConfig", "dilations", "receptive_field", "weight_flops"]


def dilations(layers: int, cycle: int) -> list[int]:
    """Dilation of each layer: d_i = 2^(i mod cycle), i.e. 1, 2, ..., 2^(cycle-1), repeated."""
    return [2 ** (index % cycle) for index in range(layers)]


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Samples a stack of causal convolutions sees: 1 + (kernel_size - 1) * sum(dilations)."""
    return 1 + (kernel_size - 1) * sum(dilations)


def weight_flops(*modules: nn.Module) -> int:
    """FLOPs per time step of layers that each run once per step: 2 * (their weights).

    Every weight of a convolution or linear layer is one multiply-add per output step, so a
    (out, in, kernel) convolution costs 2 * out * in * kernel FLOPs per step (biases and
    activations are not counted, as in torch's FLOP counter). Only modules made of such
    layers may be passed.
    """
    return 2 * sum(
        parameter.numel()
        for module in modules
        for name, parameter in module.named_parameters()
        if name.rsplit(".", 1)[-1] == "weight"
    )


class StackConfig(BaseModel):
    """Layout of one stack; models derive it from their own (flat) config fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(gt=0, description="Gated residual blocks.")
    dilation_cycle: int = Field(gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(ge=2, le=3, description="Taps of each dilated convolution.")
    residual_channels: int = Field(gt=0, description="Width of the residual stream.")
    gate_channels: int = Field(gt=0, description="Width of each half of the gated unit.")
    skip_channels: int = Field(gt=0, description="Width of the skip outputs.")

    @classmethod
    def of(cls, config: BaseModel, **overrides) -> StackConfig:
        """The layout a model config describes: its fields of the names above, `overrides` for
        those it does not have or names otherwise (a flow's layers, a single width)."""
        fields = {name: getattr(config, name) for name in cls.model_fields if hasattr(config, name)}
        return cls(**(fields | overrides))

    @property
    def dilations(self) -> list[int]:
        """Dilation of each layer, in order."""
        return dilations(self.layers, self.dilation_cycle)

    @property
    def receptive_field(self) -> int:
        """Samples (the current one included) that shape one output of the last layer."""
        return receptive_field(self.kernel_size, self.dilations)

    @property
    def layer_cond_channels(self) -> int:
        """Conditioning channels one layer reads: 2 * gate_channels (filter half first)."""
        return 2 * self.gate_channels

    @property
    def cond_channels(self) -> int:
        """Conditioning channels of the whole stack: every layer's, stacked in layer order."""
        return self.layers * self.layer_cond_channels


class ResidualStack(nn.ModuleList):
    """The gated residual blocks of one stack, run in order with their skips summed.

    A list of `GatedResidualBlock` (so a model's parameters keep the names `blocks.<i>.*`);
    the last block has no residual projection, since nothing reads its residual output.

    Args:
        config (StackConfig): Layout.
    """

    def __init__(self, config: StackConfig):
        last = config.layers - 1
        super().__init__(
            GatedResidualBlock(
                config.residual_channels,
                config.gate_channels,
                config.skip_channels,
                config.kernel_size,
                dilation,
                residual=index < last,
            )
            for index, dilation in enumerate(config.dilations)
        )
        self.config = config

    def new_queues(self, batch_size: int, device=None, dtype=None) -> list[ConvQueue]:
        """Empty queues, one per block, for one-step mode (the past is zeros)."""
        return [block.conv.new_queue(batch_size, device=device, dtype=dtype) for block in self]

    def forward(
        self,
        h: torch.Tensor,
        conds: Sequence[torch.Tensor] = (),
        queues: Sequence[ConvQueue] | None = None,
        keep: Sequence[int] = (),
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks on a sequence, or on one step when `queues` are given.

        Args:
            h (Tensor): Input of the first block (B, residual_channels, T); T = 1 with queues.
            conds (Sequence[Tensor]): Conditioning inputs, each already projected for every
                layer and stacked: (B, cond_channels, T), or (B, cond_channels, F) at a lower
                rate (held for T / F steps each, e.g. mel frames), or (B, cond_channels, 1)
                (e.g. a speaker). Each layer adds its share of every input to its gates.
            queues (Sequence[ConvQueue] | None): Past inputs of each block, for one-step mode.
            keep (Sequence[int]): Blocks whose skip outputs are also returned.

        Returns:
            tuple: The summed skips (B, skip_channels, T), and the kept blocks' skip outputs
            (B, skip_channels, T) in block order.
        """
        for cond in conds:
            if cond.dim() != 3 or cond.shape[1] != self.config.cond_channels:
                raise ValueError(
                    f"conditioning must be (B, {self.config.cond_channels}, steps): "
                    f"{self.config.layer_cond_channels} channels for each of "
                    f"{self.config.layers} layers; got {tuple(cond.shape)}"
                )
        # One split per input for all layers: slicing inside the loop would make the backward
        # pass allocate a full-size gradient of the stacked tensor once per layer.
        per_input = [cond.split(self.config.layer_cond_channels, dim=1) for cond in conds]
        layer_conds = list(zip(*per_input, strict=True)) if per_input else [()] * len(self)
        layer_queues = [None] * len(self) if queues is None else queues
        skips, kept = None, []
        layers = zip(self, layer_conds, layer_queues, strict=True)
        for index, (block, layer_cond, queue) in enumerate(layers):
            h, skip = block(h, layer_cond, queue)
            skips = skip if skips is None else skips + skip
            if index in keep:
                kept.append(skip)
        return skips, kept
