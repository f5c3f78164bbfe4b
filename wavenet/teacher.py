"""The teacher: an autoregressive WaveNet over mu-law classes.

p_T(x) = prod_t p_T(x_t | x_<t, c, g), a 256-way softmax at each step. The input is the
previous sample as a real companded scalar (not one-hot), so that gradients can flow through
the teacher's input when a student is distilled from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from wavenet import mulaw
from wavenet.features import FeatureSpec
from wavenet.layers import Conditioner, ConvQueue, GatedResidualBlock, receptive_field, shift_right

__all__ = ["Teacher", "TeacherCache", "TeacherConfig"]


class TeacherConfig(BaseModel):
    """Architecture of the teacher. The feature spec (n_mels, hop) comes with the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(20, gt=0, description="Gated residual blocks.")
    dilation_cycle: int = Field(10, gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(2, ge=2, le=3, description="Taps of each dilated convolution.")
    residual_channels: int = Field(64, gt=0, description="Width of the residual stream.")
    gate_channels: int = Field(64, gt=0, description="Width of each half of the gated unit.")
    skip_channels: int = Field(128, gt=0, description="Width of the skip connections and head.")
    cond_channels: int = Field(128, gt=0, description="Width of the frame-rate mel encoder.")
    cond_layers: int = Field(2, ge=0, description="Convolutions in the frame-rate mel encoder.")
    cond_kernel_size: int = Field(3, gt=0, description="Their kernel size (odd).")
    speakers: list[str] = Field(
        default_factory=list, description="Speaker names, index = id; empty: single speaker."
    )
    speaker_dim: int = Field(16, gt=0, description="Size of the speaker embedding.")

    @model_validator(mode="after")
    def _check(self) -> TeacherConfig:
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError("speaker names must be unique")
        if self.cond_kernel_size % 2 != 1:
            raise ValueError(f"cond_kernel_size must be odd, got {self.cond_kernel_size}")
        return self

    @property
    def dilations(self) -> list[int]:
        """Dilation of each layer, in order."""
        return [2 ** (i % self.dilation_cycle) for i in range(self.layers)]


class TeacherCache:
    """State of incremental generation: one `ConvQueue` per layer and the last sample.

    Attributes:
        queues (list[ConvQueue]): Past inputs of each layer's dilated convolution.
        previous (Tensor): The last sample, companded, (B,); zeros before the first.
    """

    def __init__(self, queues: list[ConvQueue], previous: torch.Tensor):
        self.queues = queues
        self.previous = previous


class Teacher(nn.Module):
    """Autoregressive WaveNet with mel (local) and speaker (global) conditioning.

    Args:
        config (TeacherConfig): Architecture.
        spec (FeatureSpec): Features the model is conditioned on; kept as `model.spec`.
    """

    kind = "teacher"

    def __init__(self, config: TeacherConfig, spec: FeatureSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        gate = config.gate_channels
        self.conditioner = Conditioner(
            n_mels=spec.n_mels,
            hidden_channels=config.cond_channels,
            out_channels=config.layers * 2 * gate,
            hop_length=spec.hop_length,
            encoder_layers=config.cond_layers,
            encoder_kernel_size=config.cond_kernel_size,
            n_speakers=len(config.speakers),
            speaker_dim=config.speaker_dim,
        )
        self.input = nn.Conv1d(1, config.residual_channels, 1)
        last = config.layers - 1
        self.blocks = nn.ModuleList(
            GatedResidualBlock(
                config.residual_channels,
                gate,
                config.skip_channels,
                config.kernel_size,
                dilation,
                residual=index < last,
            )
            for index, dilation in enumerate(config.dilations)
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
        return receptive_field(self.config.kernel_size, self.config.dilations)

    def forward(
        self,
        audio: torch.Tensor,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of every sample given the samples before it.

        Args:
            audio (Tensor): Waveform in [-1, 1] (B, T), with T <= frames * hop_length.
            mel (Tensor | None): Log-mel frames (B, n_mels, frames); None for no local
                conditioning (an unconditional model).
            speaker (Tensor | None): Speaker ids (B,), or None for no speaker term.

        Returns:
            Tensor: Logits over the 256 mu-law classes (B, 256, T); logits[..., t] depend on
            audio[:, :t] only.
        """
        return self.forward_companded(mulaw.compress(audio), mel, speaker)

    def forward_companded(
        self,
        companded: torch.Tensor,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`forward` on audio already in the companded domain (B, T), as a student emits it."""
        self._check_inputs(companded, mel)
        length = companded.shape[-1]
        if mel is not None:
            cond = self.conditioner(mel, speaker)[..., :length]
        else:
            cond = self.conditioner.speaker_bias(speaker)
        h = self.input(shift_right(companded.unsqueeze(1)))
        skips = 0
        for block, layer_cond in zip(self.blocks, self._layer_slices(cond), strict=True):
            h, skip = block(h, layer_cond)
            skips = skips + skip
        return self.head(skips)

    def _layer_slices(self, cond: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Each layer's share (B, 2 * gate, T) of the stacked conditioning.

        One split for all layers: slicing inside the loop would make the backward pass
        allocate a full-size gradient of the stacked tensor once per layer.
        """
        if cond is None:
            return [None] * len(self.blocks)
        return list(cond.split(2 * self.config.gate_channels, dim=1))

    def _check_inputs(self, companded: torch.Tensor, mel: torch.Tensor | None) -> None:
        if companded.dim() != 2:
            raise ValueError(f"audio must be (B, T), got {tuple(companded.shape)}")
        if mel is None:
            return
        if mel.dim() != 3 or mel.shape[1] != self.spec.n_mels:
            raise ValueError(f"mel must be (B, {self.spec.n_mels}, frames), got {tuple(mel.shape)}")
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
        queues = [
            block.conv.new_queue(batch_size, device=param.device, dtype=param.dtype)
            for block in self.blocks
        ]
        return TeacherCache(queues, torch.zeros(batch_size, device=param.device, dtype=param.dtype))

    def step(self, cond: torch.Tensor | None, cache: TeacherCache) -> torch.Tensor:
        """Logits of the next sample from the cached past: O(layers) work, not O(receptive field).

        Args:
            cond (Tensor | None): This step's conditioning (B, layers * 2 * gate_channels, 1),
                or None for an unconditional model.
            cache (TeacherCache): State; the caller sets `cache.previous` to the sample drawn.

        Returns:
            Tensor: Logits (B, 256).
        """
        h = self.input(cache.previous.view(-1, 1, 1))
        skips = 0
        layers = zip(self.blocks, self._layer_slices(cond), cache.queues, strict=True)
        for block, layer_cond, queue in layers:
            h, skip = block(h, layer_cond, queue)
            skips = skips + skip
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
            **options: `length`, `mel_lengths`, `frames_per_chunk`, `generator`, as in `stream`.

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

        Yields:
            Tensor: Audio in [-1, 1] (B, chunk_samples); together frames * hop_length samples.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if mel is None:
            if length is None or length <= 0:
                raise ValueError("without a mel, give a positive length")
            batch = 1 if speaker is None else speaker.shape[0]
            frames, bias = None, self.conditioner.speaker_bias(speaker)
            chunk = frames_per_chunk * self.spec.hop_length
            spans = [(start, min(start + chunk, length)) for start in range(0, length, chunk)]
        else:
            self._check_inputs(mel.new_zeros(mel.shape[0], 0), mel)
            batch, num_frames = mel.shape[0], mel.shape[-1]
            frames, bias = self.conditioner.project(mel, speaker, mel_lengths)
            spans = [
                (start, start + frames_per_chunk)
                for start in range(0, num_frames, frames_per_chunk)
            ]
        cache = self.new_cache(batch)
        for start, stop in spans:
            if frames is None:
                conds = [bias] * (stop - start)
            else:
                cond = self.conditioner.upsample(frames, bias, start, stop)
                conds = [cond[..., t : t + 1] for t in range(cond.shape[-1])]
            classes = torch.empty(
                batch, len(conds), dtype=torch.long, device=self.input.weight.device
            )
            for t, step_cond in enumerate(conds):
                drawn = _sample(self.step(step_cond, cache), temperature, generator)
                cache.previous = mulaw.class_centres(drawn).to(cache.previous.dtype)
                classes[:, t] = drawn
            yield mulaw.decode(classes)


def _sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None):
    """Draw one class per row of logits (B, 256); temperature 0 is argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
