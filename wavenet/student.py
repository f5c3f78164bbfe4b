"""The student: a Parallel WaveNet, an inverse autoregressive flow of causal WaveNets.

z ~ Logistic(0, 1)^T. Flow k maps x^(k) = x^(k-1) * s_k + mu_k, where (mu_k, log s_k) at step t
come from a causal WaveNet over x^(k-1) shifted by one step (so they see x^(k-1)_<t only).
Composed, each output is one logistic: x_t = z_t * s_tot,t + mu_tot,t, with
s_tot = prod_k s_k and mu_tot folded through the flows (mu_tot <- mu_tot * s_k + mu_k).
All T samples come out of one parallel pass. Outputs live in the companded (mu-law) domain.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from wavenet import mulaw
from wavenet.conditioning import ConditionedModel, ConditioningConfig
from wavenet.features import FeatureSpec
from wavenet.flow_inference import PreparedFlow, prepare_flow, sample_flows
from wavenet.layers import shift_right
from wavenet.stack import ResidualStack, StackConfig, weight_flops

__all__ = ["FlowWaveNet", "Student", "StudentConfig", "sample_logistic"]


class StudentConfig(ConditioningConfig):
    """Architecture of the student: the paper's layout by default; configs hold a lean one."""

    flow_layers: list[int] = Field([10, 10, 10, 30], min_length=1, description="Layers per flow.")
    dilation_cycle: int = Field(10, gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(3, ge=2, le=3, description="Taps of each dilated convolution.")
    residual_channels: int = Field(64, gt=0, description="Width of each flow's residual stream.")
    gate_channels: int = Field(64, gt=0, description="Width of each half of the gated unit.")
    skip_channels: int = Field(64, gt=0, description="Width of the skip connections.")
    upsample: str = Field(
        "repeat",
        pattern="^(repeat|interpolate)$",
        description="repeat: hold each frame's conditioning for hop samples (broadcast, fast); "
        "interpolate: the teacher's learned interpolation (smoother, more memory).",
    )
    log_scale_min: float = Field(-7.0, description="Floor of each flow's log s (ClariNet).")
    initial_scale: float = Field(0.05, gt=0, description="s_tot at initialisation.")

    @model_validator(mode="after")
    def _check_flows(self) -> StudentConfig:
        if any(layers <= 0 for layers in self.flow_layers):
            raise ValueError("every flow needs at least one layer")
        return self

    @property
    def flow_stacks(self) -> list[StackConfig]:
        """Layout of each flow's residual stack, first flow first."""
        return [StackConfig.of(self, layers=layers) for layers in self.flow_layers]


def sample_logistic(shape, generator=None, device=None, eps: float = 1e-6) -> torch.Tensor:
    """z ~ Logistic(0, 1): z = log u - log(1 - u), u ~ Uniform(eps, 1 - eps)."""
    u = torch.rand(shape, generator=generator, device=device) * (1 - 2 * eps) + eps
    return torch.log(u) - torch.log1p(-u)


class FlowWaveNet(nn.Module):
    """One flow: a causal WaveNet from x^(k-1)_<t to (mu_k, log s_k) at every t.

    Args:
        stack (StackConfig): Layout of the flow's residual stack.
        initial_log_scale (float): log s_k at initialisation (the output layer starts at zero
            weight, so every flow starts as a fixed affine map).
    """

    def __init__(self, stack: StackConfig, initial_log_scale: float):
        super().__init__()
        self.input = nn.Conv1d(1, stack.residual_channels, 1)
        self.blocks = ResidualStack(stack)
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
        """FLOPs of one sample: the input, the residual stack and the (mu, log s) head."""
        return weight_flops(self.input, self.blocks, self.output)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) -> mu (B, T), log_s (B, T), each depending on x[:, :t] only.

        cond is (B, layers * 2 * gate, T or F): every layer's conditioning, stacked.
        """
        h = self.input(shift_right(x.unsqueeze(1)))
        skips, _ = self.blocks(h, () if cond is None else (cond,))
        mu, log_s = self.output(F.relu(skips)).unbind(dim=1)
        return mu, log_s


class Student(ConditionedModel):
    """Parallel WaveNet: K inverse autoregressive flows sharing one mel conditioner.

    Args:
        config (StudentConfig): Architecture.
        spec (FeatureSpec): Features the model is conditioned on.
    """

    kind = "student"

    def __init__(self, config: StudentConfig, spec: FeatureSpec):
        stacks = config.flow_stacks
        flow_channels = [stack.cond_channels for stack in stacks]
        super().__init__(config, spec, sum(flow_channels), config.upsample == "interpolate")
        self.flow_channels = flow_channels
        initial = math.log(config.initial_scale) / len(stacks)
        self.flows = nn.ModuleList(FlowWaveNet(stack, initial) for stack in stacks)

    @property
    def receptive_field(self) -> int:
        """Samples of z (this one and those before it) that shape one output sample."""
        return 1 + sum(flow.receptive_field for flow in self.flows)

    @property
    def flops_per_sample(self) -> int:
        """FLOPs of one output sample through every flow (the mel conditioning runs at frame
        rate, hop times more rarely, and is left out)."""
        return sum(flow.flops_per_sample for flow in self.flows)

    def conditioning(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        mel_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Every flow's conditioning, stacked: (B, sum of flow channels, F or F * hop).

        With `mel_lengths`, each item of a zero-padded batch is encoded on its own frames, so
        its output equals that of the item alone.
        """
        return self.conditioner(mel, speaker, mel_lengths)

    def flow(
        self, z: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the flows on noise z (B, T) with stacked conditioning from `conditioning`.

        Returns:
            tuple: x (B, T) companded, mu_tot (B, T), log_s_tot (B, T); x = z * s_tot + mu_tot
            and (mu_tot, log_s_tot)[t] depend on z[:, :t] only.
        """
        x = z
        mu_tot = torch.zeros_like(z)
        log_s_tot = torch.zeros_like(z)
        for flow, flow_cond in zip(self.flows, cond.split(self.flow_channels, dim=1), strict=True):
            mu, log_s = flow(x, flow_cond)
            log_s = log_s.clamp(min=self.config.log_scale_min)
            scale = torch.exp(log_s)
            x = x * scale + mu
            mu_tot = mu_tot * scale + mu
            log_s_tot = log_s_tot + log_s
        return x, mu_tot, log_s_tot

    def sample(
        self, z: torch.Tensor, cond: torch.Tensor, prepared: list[PreparedFlow] | None = None
    ) -> torch.Tensor:
        """The companded audio x (B, T) of `flow`, alone; with `prepared` flows (made by
        `prepare_flow`, no gradients), through their faster evaluation of the same function."""
        if prepared is None:
            return self.flow(z, cond)[0]
        conds = cond.split(self.flow_channels, dim=1)
        return sample_flows(prepared, z, conds, self.config.log_scale_min)

    def forward(
        self, z: torch.Tensor, mel: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transform logistic noise into companded audio.

        Args:
            z (Tensor): Logistic(0, 1) noise (B, T), T = frames * hop_length.
            mel (Tensor): Log-mel frames (B, n_mels, frames).
            speaker (Tensor | None): Speaker ids (B,), or None.

        Returns:
            tuple: audio_companded (B, T), mu_tot (B, T), log_s_tot (B, T).
        """
        if z.dim() != 2 or z.shape[-1] != self.spec.samples_for(mel.shape[-1]):
            raise ValueError(
                f"z must be (B, frames * hop) = (B, {self.spec.samples_for(mel.shape[-1])}), "
                f"got {tuple(z.shape)}"
            )
        return self.flow(z, self.conditioning(mel, speaker))

    @torch.no_grad()
    def generate(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        temperature: float = 1.0,
        **options,
    ) -> torch.Tensor:
        """Audio from mel in parallel: (B, n_mels, frames) -> (B, frames * hop) in [-1, 1].

        `temperature` scales the noise z (0 gives mu_tot, the most likely waveform);
        `**options` are those of `stream`.
        """
        return torch.cat(list(self.stream(mel, speaker, temperature, **options)), dim=-1)

    @torch.no_grad()
    def stream(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        temperature: float = 1.0,
        mel_lengths: torch.Tensor | None = None,
        frames_per_chunk: int = 64,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Audio in chunks of `frames_per_chunk` frames, equal to one whole-utterance pass.

        The noise for the whole utterance is drawn first, and the conditioning at frame rate
        (hop times smaller); each chunk is recomputed from `ceil((receptive_field - 1) / hop)`
        frames before it, its conditioning brought to the flows' rate for that window alone,
        so every output sample sees exactly the noise and conditioning it would see in one
        pass, while memory stays bounded by the chunk size.

        Args:
            mel (Tensor): Log-mel frames (B, n_mels, frames).
            speaker (Tensor | None): Speaker ids (B,), or None.
            temperature (float): Scale of the noise z; 0 gives the flow's mean.
            mel_lengths (Tensor | None): Real frames per item of a zero-padded batch (B,).
            frames_per_chunk (int): Frames per yielded chunk.
            generator (torch.Generator | None): Random source on the model's device.

        Yields:
            Tensor: Audio in [-1, 1] (B, chunk_frames * hop_length).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if frames_per_chunk <= 0:
            raise ValueError(f"frames_per_chunk must be positive, got {frames_per_chunk}")
        frames, bias = self.conditioner.project(mel, speaker, mel_lengths)
        batch, num_frames = mel.shape[0], mel.shape[-1]
        hop = self.spec.hop_length
        device = self.flows[0].input.weight.device
        z = sample_logistic((batch, num_frames * hop), generator, device) * temperature
        context = math.ceil((self.receptive_field - 1) / hop)
        # On CPU the flows run as matrix products on one buffer (measured faster there); the
        # weights are arranged once for all chunks.
        prepared = [prepare_flow(flow) for flow in self.flows] if device.type == "cpu" else None
        for start in range(0, num_frames, frames_per_chunk):
            stop = min(start + frames_per_chunk, num_frames)
            first = max(start - context, 0)
            window = self.conditioner.window(frames, bias, first, stop)
            x = self.sample(z[:, first * hop : stop * hop], window, prepared)
            yield mulaw.expand(x[:, (start - first) * hop :]).clamp(-1.0, 1.0)
