"""The teacher: an autoregressive WaveNet over mu-law classes.

p_T(x) = prod_t p_T(x_t | x_<t, c, g), a 256-way softmax at each step. The input is the
previous sample as a real companded scalar (not one-hot), so that gradients can flow through
the teacher's input when a student is distilled from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn

from wavenet import mulaw
from wavenet.conditioning import ConditionedModel, ConditioningConfig
from wavenet.excitation_conditioning import ExcitationProjection, check_excitation
from wavenet.features import FeatureSpec
from wavenet.layers import ConvQueue, shift_right
from wavenet.stack import ResidualStack, StackConfig, weight_flops

__all__ = ["Teacher", "TeacherCache", "TeacherConfig"]


class TeacherConfig(ConditioningConfig):
    """Architecture of the teacher. The feature spec (n_mels, hop) comes with the model."""

    layers: int = Field(20, gt=0, description="Gated residual blocks.")
    dilation_cycle: int = Field(10, gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(2, ge=2, le=3, description="Taps of each dilated convolution.")
    residual_channels: int = Field(64, gt=0, description="Width of the residual stream.")
    gate_channels: int = Field(64, gt=0, description="Width of each half of the gated unit.")
    skip_channels: int = Field(128, gt=0, description="Width of the skip connections and head.")

    @property
    def stack(self) -> StackConfig:
        """Layout of the residual stack."""
        return StackConfig.of(self)


class TeacherCache:
    """State of incremental generation: one `ConvQueue` per layer and the last sample.

    Attributes:
        queues (list[ConvQueue]): Past inputs of each layer's dilated convolution.
        previous (Tensor): The last sample, companded, (B,); zeros before the first.
    """

    def __init__(self, queues: list[ConvQueue], previous: torch.Tensor):
        self.queues = queues
        self.previous = previous


class Teacher(ConditionedModel):
    """Autoregressive WaveNet with mel (local) and speaker (global) conditioning, and with
    the harmonic excitation e at sample rate when the config has one (pitch-aware).

    Args:
        config (TeacherConfig): Architecture.
        spec (FeatureSpec): Features the model is conditioned on.
    """

    kind = "teacher"

    def __init__(self, config: TeacherConfig, spec: FeatureSpec):
        stack = config.stack
        super().__init__(config, spec, stack.cond_channels)
        self.input = nn.Conv1d(1, config.residual_channels, 1)
        self.blocks = ResidualStack(stack)
        self.excitation = (
            ExcitationProjection(config.excitation, stack.cond_channels)
            if config.excitation
            else None
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(config.skip_channels, config.skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(config.skip_channels, mulaw.NUM_CLASSES, 1),
        )

    @property
    def receptive_field(self) -> int:
        """Past samples that can influence one prediction."""
        return self.blocks.config.receptive_field

    @property
    def flops_per_sample(self) -> int:
        """FLOPs of one generated sample: the input, the residual stack, the excitation's
        projection and the output head (the mel conditioning runs at frame rate, hop times
        more rarely, and is left out)."""
        per_sample = [self.input, self.blocks, self.head, self.excitation]
        return weight_flops(*(module for module in per_sample if module is not None))

    def forward(
        self,
        audio: torch.Tensor,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        f0: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
        excitation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of every sample given the samples before it.

        Args:
            audio (Tensor): Waveform in [-1, 1] (B, T), with T <= frames * hop_length.
            mel (Tensor | None): Log-mel frames (B, n_mels, frames); None for no local
                conditioning (an unconditional model).
            speaker (Tensor | None): Speaker ids (B,), or None for no speaker term.
            f0 (Tensor | None): F0 (B, frames) in Hz, 0 = unvoiced: a pitch-aware model's.
            phase (Tensor | None): Initial phase of its excitation (B,), radians; None = 0.
            excitation (Tensor | None): A prebuilt e (B, 2H + 1, >= T) instead of (f0, phase).

        Returns:
            Tensor: Logits over the 256 mu-law classes (B, 256, T); logits[..., t] depend on
            audio[:, :t] only.
        """
        companded = mulaw.compress(audio)
        return self.forward_companded(companded, mel, speaker, f0, phase, excitation)

    def forward_companded(
        self,
        companded: torch.Tensor,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        f0: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
        excitation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`forward` on audio already in the companded domain (B, T), as a student emits it."""
        self._check_inputs(companded, mel)
        length = companded.shape[-1]
        if mel is not None:
            conds = [self.conditioner(mel, speaker)[..., :length]]
        else:
            bias = self.conditioner.speaker_bias(speaker)
            conds = [] if bias is None else [bias]
        e = self._excitation(companded, mel, f0, phase, excitation)
        if e is not None:
            conds.append(self.excitation(e[..., :length]))
        h = self.input(shift_right(companded.unsqueeze(1)))
        skips, _ = self.blocks(h, conds)
        return self.head(skips)

    def _excitation(self, companded, mel, f0, phase, excitation) -> torch.Tensor | None:
        """The prebuilt e, checked, or e built from (f0, phase); None for a mel-only model."""
        if excitation is None:
            frames = None if mel is None else mel.shape[-1]
            return self.excitation_signal(f0, phase, frames)[0]
        if self.excitation is None:
            raise ValueError("this model has no excitation (mel only): it takes no excitation")
        if f0 is not None or phase is not None:
            raise ValueError("give either f0 and phase or a prebuilt excitation, not both")
        check_excitation(excitation, self.config.excitation, *companded.shape)
        return excitation

    def _check_inputs(self, companded: torch.Tensor, mel: torch.Tensor | None) -> None:
        if companded.dim() != 2:
            raise ValueError(f"audio must be (B, T), got {tuple(companded.shape)}")
        if mel is None:
            return
        self.conditioner.check_mel(mel)
        if companded.shape[0] != mel.shape[0]:
            raise ValueError(f"audio has batch {companded.shape[0]} but mel has {mel.shape[0]}")
        if companded.shape[-1] > self.spec.samples_for(mel.shape[-1]):
            raise ValueError(
                f"{companded.shape[-1]} samples need at least "
                f"{self.spec.frames_for(companded.shape[-1])} mel frames, got {mel.shape[-1]}"
            )

    def new_cache(self, batch_size: int) -> TeacherCache:
        """Empty generation state: the past is silence, exactly as `forward` pads it."""
        param = self.input.weight
        queues = self.blocks.new_queues(batch_size, device=param.device, dtype=param.dtype)
        return TeacherCache(queues, torch.zeros(batch_size, device=param.device, dtype=param.dtype))

    def step(
        self,
        cond: torch.Tensor | None,
        cache: TeacherCache,
        excitation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the next sample from the cached past: O(layers) work, not O(receptive field).

        Args:
            cond (Tensor | None): This step's conditioning (B, layers * 2 * gate_channels, 1),
                or None for an unconditional model.
            cache (TeacherCache): State; the caller sets `cache.previous` to the sample drawn.
            excitation (Tensor | None): This step's e (B, 2H + 1, 1) for a pitch-aware model.

        Returns:
            Tensor: Logits (B, 256).
        """
        conds = [] if cond is None else [cond]
        if (excitation is None) != (self.excitation is None):
            raise ValueError("a pitch-aware model needs e at every step, a mel-only one none")
        if excitation is not None:
            conds.append(self.excitation(excitation))
        h = self.input(cache.previous.view(-1, 1, 1))
        skips, _ = self.blocks(h, conds, cache.queues)
        return self.head(skips)[..., 0]

    @torch.no_grad()
    def generate(
        self,
        mel: torch.Tensor | None,
        speaker: torch.Tensor | None = None,
        temperature: float = 1.0,
        **options,
    ) -> torch.Tensor:
        """Sample audio one step at a time with cached convolution inputs.

        Args:
            mel (Tensor | None): Log-mel frames (B, n_mels, frames), or None (unconditional).
            speaker (Tensor | None): Speaker ids (B,), or None.
            temperature (float): Softmax temperature; 0 takes the most likely class.
            **options: `length`, `mel_lengths`, `frames_per_chunk`, `generator`, `f0`,
                `phase`, as in `stream`.

        Returns:
            Tensor: Audio in [-1, 1] (B, frames * hop_length), or (B, length) without a mel.
        """
        return torch.cat(list(self.stream(mel, speaker, temperature, **options)), dim=-1)

    @torch.no_grad()
    def stream(
        self,
        mel: torch.Tensor | None,
        speaker: torch.Tensor | None = None,
        temperature: float = 1.0,
        length: int | None = None,
        mel_lengths: torch.Tensor | None = None,
        frames_per_chunk: int = 16,
        generator: torch.Generator | None = None,
        f0: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Sample audio in chunks of `frames_per_chunk * hop_length` samples, as they are made.

        Args:
            mel (Tensor | None): Log-mel frames (B, n_mels, frames), or None (unconditional).
            speaker (Tensor | None): Speaker ids (B,), or None.
            temperature (float): Softmax temperature; 0 takes the most likely class.
            length (int | None): Samples to make without a mel (batch 1, or one per speaker).
            mel_lengths (Tensor | None): Real frames of each item (B,) when a batch of
                different lengths was zero-padded: each item is then conditioned exactly as
                if it were alone, and its audio is valid up to mel_lengths * hop_length.
            frames_per_chunk (int): Frames per chunk (bounds the conditioning kept in memory).
            generator (torch.Generator | None): Random source on the model's device.
            f0 (Tensor | None): F0 (B, frames) in Hz for a pitch-aware model (with a mel).
            phase (Tensor | None): Its excitation's initial phase (B,); None = 0. Each chunk's
                e starts from the phase the previous one ended on.

        Yields:
            Tensor: Audio in [-1, 1] (B, chunk_samples); together frames * hop_length samples.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if mel is None:
            if length is None or length <= 0:
                raise ValueError("without a mel, give a positive length")
            if self.excitation is not None:
                raise ValueError("a pitch-aware teacher generates from a mel and its f0")
            batch = 1 if speaker is None else speaker.shape[0]
            frames, bias = None, self.conditioner.speaker_bias(speaker)
            chunk = frames_per_chunk * self.spec.hop_length
            spans = [(start, min(start + chunk, length)) for start in range(0, length, chunk)]
        else:
            self._check_inputs(mel.new_zeros(mel.shape[0], 0), mel)
            batch, num_frames = mel.shape[0], mel.shape[-1]
            frames, bias = self.conditioner.project(mel, speaker, mel_lengths)
            spans = [
                (start, min(start + frames_per_chunk, num_frames))
                for start in range(0, num_frames, frames_per_chunk)
            ]
        cache = self.new_cache(batch)
        for start, stop in spans:
            if frames is None:
                conds = [bias] * (stop - start)
            else:
                cond = self.conditioner.window(frames, bias, start, stop)
                conds = [cond[..., t : t + 1] for t in range(cond.shape[-1])]
            mel_frames = None if mel is None else mel.shape[-1]
            e, phase = self.excitation_signal(f0, phase, mel_frames, start, stop)
            e = None if e is None else e.to(cache.previous)
            classes = torch.empty(
                batch, len(conds), dtype=torch.long, device=self.input.weight.device
            )
            for t, step_cond in enumerate(conds):
                step_e = None if e is None else e[..., t : t + 1]
                drawn = _sample(self.step(step_cond, cache, step_e), temperature, generator)
                cache.previous = mulaw.class_centres(drawn).to(cache.previous.dtype)
                classes[:, t] = drawn
            yield mulaw.decode(classes)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Draw one class per row of logits (B, 256); temperature 0 is argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
