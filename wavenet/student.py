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
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from wavenet import mulaw
from wavenet.features import FeatureSpec
from wavenet.flow_inference import PreparedFlow, prepare_flow, sample_flows
from wavenet.layers import Conditioner, GatedResidualBlock, receptive_field, shift_right

__all__ = ["FlowWaveNet", "Student", "StudentConfig", "sample_logistic"]


class StudentConfig(BaseModel):
    """Architecture of the student: the paper's layout by default; configs hold a lean one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flow_layers: list[int] = Field([10, 10, 10, 30], min_length=1, description="Layers per flow.")
    dilation_cycle: int = Field(10, gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(3, ge=2, le=3, description="Taps of each dilated convolution.")
    residual_channels: int = Field(64, gt=0, description="Width of each flow's residual stream.")
    gate_channels: int = Field(64, gt=0, description="Width of each half of the gated unit.")
    skip_channels: int = Field(64, gt=0, description="Width of the skip connections.")
    cond_channels: int = Field(128, gt=0, description="Width of the frame-rate mel encoder.")
    cond_layers: int = Field(2, ge=0, description="Convolutions in the frame-rate mel encoder.")
    cond_kernel_size: int = Field(3, gt=0, description="Their kernel size (odd).")
    upsample: str = Field(
        "repeat",
        pattern="^(repeat|interpolate)$",
        description="repeat: hold each frame's conditioning for hop samples (broadcast, fast); "
        "interpolate: the teacher's learned interpolation (smoother, more memory).",
    )
    speakers: list[str] = Field(default_factory=list, description="Speaker names; index = id.")
    speaker_dim: int = Field(16, gt=0, description="Size of the speaker embedding.")
    log_scale_min: float = Field(-7.0, description="Floor of each flow's log s (ClariNet).")
    initial_scale: float = Field(0.05, gt=0, description="s_tot at initialisation.")

    @model_validator(mode="after")
    def _check(self) -> StudentConfig:
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError("speaker names must be unique")
        if any(layers <= 0 for layers in self.flow_layers):
            raise ValueError("every flow needs at least one layer")
        return self

    def dilations(self, layers: int) -> list[int]:
        """Dilation of each layer of a flow with `layers` layers."""
        return [2 ** (i % self.dilation_cycle) for i in range(layers)]


def sample_logistic(shape, generator=None, device=None, eps: float = 1e-6) -> torch.Tensor:
    """z ~ Logistic(0, 1): z = log u - log(1 - u), u ~ Uniform(eps, 1 - eps)."""
    u = torch.rand(shape, generator=generator, device=device) * (1 - 2 * eps) + eps
    return torch.log(u) - torch.log1p(-u)


class FlowWaveNet(nn.Module):
    """One flow: a causal WaveNet from x^(k-1)_<t to (mu_k, log s_k) at every t.

    Args:
        config (StudentConfig): Shared widths and kernel.
        layers (int): Residual blocks in this flow.
        initial_log_scale (float): log s_k at initialisation (the output layer starts at zero
            weight, so every flow starts as a fixed affine map).
    """

    def __init__(self, config: StudentConfig, layers: int, initial_log_scale: float):
        super().__init__()
        self.dilations = config.dilations(layers)
        self.input = nn.Conv1d(1, config.residual_channels, 1)
        self.blocks = nn.ModuleList(
            GatedResidualBlock(
                config.residual_channels,
                config.gate_channels,
                config.skip_channels,
                config.kernel_size,
                dilation,
                residual=index < layers - 1,
            )
            for index, dilation in enumerate(self.dilations)
        )
        self.output = nn.Conv1d(config.skip_channels, 2, 1)
        nn.init.zeros_(self.output.weight)
        with torch.no_grad():
            self.output.bias.copy_(torch.tensor([0.0, initial_log_scale]))
        self.receptive_field = receptive_field(config.kernel_size, self.dilations)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T) -> mu (B, T), log_s (B, T), each depending on x[:, :t] only.

        cond is (B, layers * 2 * gate, T or F): every layer's conditioning, stacked.
        """
        h = self.input(shift_right(x.unsqueeze(1)))
        slices = [None] * len(self.blocks) if cond is None else cond.chunk(len(self.blocks), 1)
        skips = 0
        for block, layer_cond in zip(self.blocks, slices, strict=True):
            h, skip = block(h, layer_cond)
            skips = skips + skip
        mu, log_s = self.output(F.relu(skips)).unbind(dim=1)
        return mu, log_s


class Student(nn.Module):
    """Parallel WaveNet: K inverse autoregressive flows sharing one mel conditioner.

    Args:
        config (StudentConfig): Architecture.
        spec (FeatureSpec): Features the model is conditioned on; kept as `model.spec`.
    """

    kind = "student"

    def __init__(self, config: StudentConfig, spec: FeatureSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        per_layer = 2 * config.gate_channels
        self.flow_channels = [layers * per_layer for layers in config.flow_layers]
        self.conditioner = Conditioner(
            n_mels=spec.n_mels,
            hidden_channels=config.cond_channels,
            out_channels=sum(self.flow_channels),
            hop_length=spec.hop_length,
            encoder_layers=config.cond_layers,
            encoder_kernel_size=config.cond_kernel_size,
            n_speakers=len(config.speakers),
            speaker_dim=config.speaker_dim,
            interpolate=config.upsample == "interpolate",
        )
        initial = math.log(config.initial_scale) / len(config.flow_layers)
        self.flows = nn.ModuleList(
            FlowWaveNet(config, layers, initial) for layers in config.flow_layers
        )

    @property
    def receptive_field(self) -> int:
        """Samples of z (this one and those before it) that shape one output sample."""
        return 1 + sum(flow.receptive_field for flow in self.flows)

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
        if mel.dim() != 3 or mel.shape[1] != self.spec.n_mels:
            raise ValueError(f"mel must be (B, {self.spec.n_mels}, frames), got {tuple(mel.shape)}")
        frames, bias = self.conditioner.project(mel, speaker, mel_lengths)
        if self.config.upsample == "interpolate":
            return self.conditioner.upsample(frames, bias)
        return frames if bias is None else frames + bias

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

        The noise for the whole utterance is drawn first; each chunk is recomputed from
        `ceil((receptive_field - 1) / hop)` frames before it, so every output sample sees
        exactly the noise and conditioning it would see in one pass, while memory stays
        bounded by the chunk size.

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
        cond = self.conditioning(mel, speaker, mel_lengths)
        batch, num_frames = mel.shape[0], mel.shape[-1]
        hop = self.spec.hop_length
        device = self.flows[0].input.weight.device
        z = sample_logistic((batch, num_frames * hop), generator, device) * temperature
        context = math.ceil((self.receptive_field - 1) / hop)
        steps_per_frame = cond.shape[-1] // num_frames  # 1 at frame rate, hop at sample rate
        # On CPU the flows run as matrix products on one buffer (measured faster there); the
        # weights are arranged once for all chunks.
        prepared = [prepare_flow(flow) for flow in self.flows] if device.type == "cpu" else None
        for start in range(0, num_frames, frames_per_chunk):
            stop = min(start + frames_per_chunk, num_frames)
            first = max(start - context, 0)
            window = cond[..., first * steps_per_frame : stop * steps_per_frame]
            x = self.sample(z[:, first * hop : stop * hop], window, prepared)
            yield mulaw.expand(x[:, (start - first) * hop :]).clamp(-1.0, 1.0)
