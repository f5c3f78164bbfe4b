"""The student: a Parallel WaveNet, an inverse autoregressive flow of causal WaveNets.

z ~ Logistic(0, 1)^T. Flow k maps x^(k) = x^(k-1) * s_k + mu_k, where (mu_k, log s_k) at step t
come from a causal WaveNet over x^(k-1) shifted by one step (so they see x^(k-1)_<t only).
Composed, each output is one logistic: x_t = z_t * s_tot,t + mu_tot,t, with
s_tot = prod_k s_k and mu_tot folded through the flows (mu_tot <- mu_tot * s_k + mu_k).
All T samples come out of one parallel pass. Outputs live in the companded (mu-law) domain.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from wavenet import mulaw
from wavenet.conditioning import ConditionedModel, ConditioningConfig
from wavenet.excitation import advance_phase
from wavenet.features import FeatureSpec
from wavenet.flow import FlowWaveNet, sample_logistic
from wavenet.flow_inference import PreparedFlow, prepare_flow, sample_flows
from wavenet.parallel import in_order, window_pool
from wavenet.source import HarmonicNoiseSource, SourceConfig
from wavenet.source_flow import SourceSteps, source_shift_scale
from wavenet.stack import StackConfig

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
    initial_scale: float = Field(
        0.05, gt=0, description="s_tot at initialisation (without a source; see `source`)."
    )
    source: Literal["harmonic"] | None = Field(
        None,
        description="harmonic: a first affine step x = z s_src + compress(harmonic) from the "
        "harmonic-plus-noise source (wavenet.source; needs excitation), the WaveNet flows "
        "after it starting as the identity, so the untrained student is that synthesis; "
        "None: the WaveNet flows alone, starting at s_tot = initial_scale.",
    )
    # Filled with SourceConfig's defaults when `source` is set, so a saved student keeps the
    # settings it was trained with even if the defaults change.
    source_settings: SourceConfig | None = Field(
        None, description="The source's harmonics, fit, refinements and noise shares."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_source_settings(cls, data):
        if isinstance(data, dict) and data.get("source") and data.get("source_settings") is None:
            data = {**data, "source_settings": SourceConfig().model_dump()}
        return data

    @model_validator(mode="after")
    def _check_flows(self) -> StudentConfig:
        if any(layers <= 0 for layers in self.flow_layers):
            raise ValueError("every flow needs at least one layer")
        if self.source and self.excitation is None:
            raise ValueError(f"source {self.source!r} needs an excitation (its F0 and phase)")
        if self.source_settings is not None and not self.source:
            raise ValueError("source_settings without a source: set source: harmonic")
        return self

    @property
    def flow_stacks(self) -> list[StackConfig]:
        """Layout of each flow's residual stack, first flow first."""
        return [StackConfig.of(self, layers=layers) for layers in self.flow_layers]


class Student(ConditionedModel):
    """Parallel WaveNet: K inverse autoregressive flows sharing one mel conditioner.

    A pitch-aware student (config.excitation) adds the harmonic excitation e to every flow's
    gates; with config.source, a first affine step from the harmonic-plus-noise source comes
    before the flows: x^(0) = z s_src + mu_src, where (mu_src, log s_src) depend on the mel
    and F0 only, so the composed map stays one logistic per step and log|det| stays
    sum_t log s_tot,t.

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
        # After a source, every flow starts as the identity (mu = 0, log s = 0): the untrained
        # student is the source's synthesis, not a scaled-down copy of it.
        initial = 0.0 if config.source else math.log(config.initial_scale) / len(stacks)
        self.flows = nn.ModuleList(
            FlowWaveNet(stack, initial, config.excitation) for stack in stacks
        )
        harmonic = config.source == "harmonic"
        self.source = HarmonicNoiseSource(spec, config.source_settings) if harmonic else None

    @property
    def receptive_field(self) -> int:
        """Samples of z (this one and those before it) that shape one output sample."""
        return 1 + sum(flow.receptive_field for flow in self.flows)

    @property
    def flops_per_sample(self) -> int:
        """FLOPs of one output sample through every flow (the mel conditioning runs at frame
        rate, hop times more rarely, and is left out, as is the source's sine synthesis)."""
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
        self,
        z: torch.Tensor,
        cond: torch.Tensor,
        excitation: torch.Tensor | None = None,
        source: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the flows on noise z (B, T) with stacked conditioning from `conditioning`.

        Args:
            z (Tensor): Logistic(0, 1) noise (B, T).
            cond (Tensor): Stacked mel conditioning (B, sum of flow channels, T or F).
            excitation (Tensor | None): e (B, 2H + 1, T) of a pitch-aware student.
            source (tuple | None): The source's (mu_src, log_s_src), each (B, T), of a
                student with a source (`wavenet.source_flow.source_shift_scale`).

        Returns:
            tuple: x (B, T) companded, mu_tot (B, T), log_s_tot (B, T); x = z * s_tot + mu_tot
            and (mu_tot, log_s_tot)[t] depend on z[:, :t] only.
        """
        composed = (z, torch.zeros_like(z), torch.zeros_like(z))
        if source is not None:  # its log s is set, not learned: no floor
            composed = self._affine(*composed, *source, floor=None)
        floor = self.config.log_scale_min
        for flow, flow_cond in zip(self.flows, cond.split(self.flow_channels, dim=1), strict=True):
            composed = self._affine(*composed, *flow(composed[0], flow_cond, excitation), floor)
        return composed

    @staticmethod
    def _affine(x, mu_tot, log_s_tot, mu, log_s, floor: float | None):
        """One affine step x <- x s + mu, folded into (mu_tot, log_s_tot), log s floored at
        `floor` (None: not floored)."""
        if floor is not None:
            log_s = log_s.clamp(min=floor)
        scale = torch.exp(log_s)
        return x * scale + mu, mu_tot * scale + mu, log_s_tot + log_s

    def sample(
        self,
        z: torch.Tensor,
        cond: torch.Tensor,
        prepared: list[PreparedFlow] | None = None,
        excitation: torch.Tensor | None = None,
        source: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The companded audio x (B, T) of `flow`, alone; with `prepared` flows (made by
        `prepare_flow`, no gradients), through their faster evaluation of the same function."""
        if prepared is None:
            return self.flow(z, cond, excitation, source)[0]
        conds = cond.split(self.flow_channels, dim=1)
        return sample_flows(prepared, z, conds, self.config.log_scale_min, excitation, source)

    def forward(
        self,
        z: torch.Tensor,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        f0: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transform logistic noise into companded audio.

        Args:
            z (Tensor): Logistic(0, 1) noise (B, T), T = frames * hop_length.
            mel (Tensor): Log-mel frames (B, n_mels, frames).
            speaker (Tensor | None): Speaker ids (B,), or None.
            f0 (Tensor | None): F0 (B, frames) in Hz, 0 = unvoiced: a pitch-aware student's.
            phase (Tensor | None): Initial phase of its excitation (B,), radians; None = 0.

        Returns:
            tuple: audio_companded (B, T), mu_tot (B, T), log_s_tot (B, T).
        """
        if z.dim() != 2 or z.shape[-1] != self.spec.samples_for(mel.shape[-1]):
            raise ValueError(
                f"z must be (B, frames * hop) = (B, {self.spec.samples_for(mel.shape[-1])}), "
                f"got {tuple(z.shape)}"
            )
        cond = self.conditioning(mel, speaker)
        e, _ = self.excitation_signal(f0, phase, mel.shape[-1])
        source = self.source and source_shift_scale(self.source, mel, f0, phase)
        return self.flow(z, cond, e, source)

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
        `**options` are those of `stream` (a pitch-aware student needs `f0`).
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
        f0: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
        shifted: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Audio in chunks of `frames_per_chunk` frames, equal to one whole-utterance pass.

        The noise for the whole utterance is drawn first, and the conditioning and the
        source's parameters at frame rate (hop times smaller); each chunk is recomputed
        from `ceil((receptive_field - 1) / hop)` frames before it, its conditioning (and
        excitation and source) brought to the flows' rate for that window alone, so every
        output sample sees exactly the noise and conditioning it would see in one pass, while
        memory and work stay bounded by the chunk size. The excitation's phase runs on from
        window to window:

            frames   | ... | first        start        stop | next first ... next stop |
            window         [==== context ==|=== chunk ===)
            phase          phi(first) --advance--> phi(next first)

        Since no window reads another's output, on a CPU with several torch threads the
        windows run side by side, one per thread (`wavenet.parallel`), as do the pieces of
        the source's parameters (`wavenet.source_flow.pieces`); the chunks come out in order
        and equal one thread's.

        Args:
            mel (Tensor): Log-mel frames (B, n_mels, frames).
            speaker (Tensor | None): Speaker ids (B,), or None.
            temperature (float): Scale of the noise z; 0 gives the flow's mean.
            mel_lengths (Tensor | None): Real frames per item of a zero-padded batch (B,).
            frames_per_chunk (int): Frames per yielded chunk.
            generator (torch.Generator | None): Random source on the model's device.
            f0 (Tensor | None): F0 (B, frames) in Hz, 0 = unvoiced: a pitch-aware student's
                (in a padded batch, 0 in the padding).
            phase (Tensor | None): The excitation's initial phase (B,), radians; None = 0.
            shifted (Tensor | None): Items whose F0 is shifted from the pitch their mel was
                recorded at (B,) bool, their mel an envelope (`wavenet.synthesis_f0`): the
                source keeps the gaps between their harmonics free of noise. None = none.

        Yields:
            Tensor: Audio in [-1, 1] (B, chunk_frames * hop_length).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if frames_per_chunk <= 0:
            raise ValueError(f"frames_per_chunk must be positive, got {frames_per_chunk}")
        frames, bias = self.conditioner.project(mel, speaker, mel_lengths)
        batch, num_frames = mel.shape[0], mel.shape[-1]
        self.excitation_signal(f0, phase, num_frames, 0, 0)  # every check, before any work
        if f0 is not None and phase is None:
            phase = torch.zeros(batch, dtype=torch.float64, device=f0.device)
        hop = self.spec.hop_length
        device = self.flows[0].input.weight.device
        z = sample_logistic((batch, num_frames * hop), generator, device) * temperature
        context = math.ceil((self.receptive_field - 1) / hop)
        # On CPU the flows run as matrix products on one buffer (measured faster there); the
        # weights are arranged once for all chunks.
        prepared = [prepare_flow(flow) for flow in self.flows] if device.type == "cpu" else None
        # Windows are independent: on a CPU with several torch threads they run side by side,
        # and so do the pieces of the source's frame-rate parameters; each window synthesises.
        pool = window_pool(device)
        source_steps = self.source and SourceSteps(
            self.source, mel, f0, mel_lengths, shifted, phase, pool
        )

        def chunk(start: int, stop: int, phase: torch.Tensor | None) -> torch.Tensor:
            first = max(start - context, 0)
            window = self.conditioner.window(frames, bias, first, stop)
            e, _ = self.excitation_signal(f0, phase, num_frames, first, stop)
            source = source_steps and source_steps.shift_scale(phase, first, stop)
            x = self.sample(z[:, first * hop : stop * hop], window, prepared, e, source)
            return mulaw.expand(x[:, (start - first) * hop :]).clamp(-1.0, 1.0)

        def chunks(phase: torch.Tensor | None) -> Iterator:
            for start in range(0, num_frames, frames_per_chunk):
                stop = min(start + frames_per_chunk, num_frames)
                yield functools.partial(chunk, start, stop, phase)
                if f0 is not None:  # the phase before the next chunk's first frame
                    first, next_first = max(start - context, 0), max(stop - context, 0)
                    phase = advance_phase(f0, self.spec, phase, first, next_first)

        yield from in_order(pool, chunks(phase))
