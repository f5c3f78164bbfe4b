"""One flow of the student: a causal WaveNet from x^(k-1)_<t to (mu_k, log s_k), and its noise.

Flow k maps x^(k) = x^(k-1) * s_k + mu_k, where (mu_k, log s_k) at step t come from a causal
WaveNet over x^(k-1) shifted by one step, so they see x^(k-1)_<t only; the noise z that the
first flow reads is Logistic(0, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wavenet.excitation import ExcitationSpec
from wavenet.excitation_conditioning import ExcitationProjection
from wavenet.layers import shift_right
from wavenet.stack import ResidualStack, StackConfig, weight_flops

__all__ = ["FlowWaveNet", "sample_logistic"]


def sample_logistic(shape, generator=None, device=None, eps: float = 1e-6) -> torch.Tensor:
    """z ~ Logistic(0, 1): z = log u - log(1 - u), u ~ Uniform(eps, 1 - eps)."""
    u = torch.rand(shape, generator=generator, device=device) * (1 - 2 * eps) + eps
    return torch.log(u) - torch.log1p(-u)


class FlowWaveNet(nn.Module):
    """One flow: a causal WaveNet from x^(k-1)_<t to (mu_k, log s_k) at every t.

    Args:
        stack (StackConfig): Layout of the flow's residual stack.
        initial_log_scale (float): log s_k at initialisation (the output layer starts at zero
            weight, so every flow starts as a fixed affine map; 0 starts it as the identity).
        excitation (ExcitationSpec | None): The harmonic excitation its gates read; None:
            mel only.
    """

    def __init__(
        self,
        stack: StackConfig,
        initial_log_scale: float,
        excitation: ExcitationSpec | None = None,
    ):
        super().__init__()
        self.input = nn.Conv1d(1, stack.residual_channels, 1)
        self.blocks = ResidualStack(stack)
        self.excitation = (
            ExcitationProjection(excitation, stack.cond_channels) if excitation else None
        )
        self.output = nn.Conv1d(stack.skip_channels, 2, 1)
        nn.init.zeros_(self.output.weight)
        with torch.no_grad():
            self.output.bias.copy_(torch.tensor([0.0, initial_log_scale]))

    @property
    def receptive_field(self) -> int:
        """Samples of x^(k-1) (this one and those before it) that shape one (mu, log s)."""
        return self.blocks.config.receptive_field

    @property
    def flops_per_sample(self) -> int:
        """FLOPs of one sample: the input, the residual stack, the excitation's projection and
        the (mu, log s) head."""
        per_sample = [self.input, self.blocks, self.output, self.excitation]
        return weight_flops(*(module for module in per_sample if module is not None))

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None, excitation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) -> mu (B, T), log_s (B, T), each depending on x[:, :t] only.

        cond is (B, layers * 2 * gate, T or F): every layer's conditioning, stacked;
        excitation is e (B, 2H + 1, T) for a pitch-aware flow, None for a mel-only one.
        """
        if (excitation is None) != (self.excitation is None):
            raise ValueError("a pitch-aware flow needs the excitation e, a mel-only one none")
        conds = [] if cond is None else [cond]
        if excitation is not None:
            conds.append(self.excitation(excitation))
        h = self.input(shift_right(x.unsqueeze(1)))
        skips, _ = self.blocks(h, conds)
        mu, log_s = self.output(F.relu(skips)).unbind(dim=1)
        return mu, log_s
