"""Mel (local) and speaker (global) conditioning, from frames to what every gated layer adds.

`ConditioningConfig` holds the conditioner's fields of a model config (the teacher's and the
student's alike); `build_conditioner` is the one place that turns them into a `Conditioner`,
and `ConditionedModel`, the base of the teacher and the student, holds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from wavenet.excitation import ExcitationSpec
from wavenet.excitation_conditioning import pitch_excitation
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec

__all__ = [
    "ConditionedModel",
    "Conditioner",
    "ConditioningConfig",
    "ConditioningUpsampler",
    "build_conditioner",
]


class ConditioningConfig(BaseModel):
    """The conditioner's part of a model config (a base class of the teacher's and student's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cond_channels: int = Field(128, gt=0, description="Width of the frame-rate mel encoder.")
    cond_layers: int = Field(2, ge=0, description="Convolutions in the frame-rate mel encoder.")
    cond_kernel_size: int = Field(3, gt=0, description="Their kernel size (odd).")
    speakers: list[str] = Field(
        default_factory=list, description="Speaker names, index = id; empty: single speaker."
    )
    speaker_dim: int = Field(16, gt=0, description="Size of the speaker embedding.")
    excitation: ExcitationSpec | None = Field(
        None, description="The harmonic excitation added to every gate; None: mel only."
    )
    # Filled in from the prepared corpus by training, like the speakers; F0 sent to a
    # pitch-aware model should come from this tracker (or a predictor trained on it).
    pitch: PitchSpec | None = Field(
        None, description="Tracker settings of the F0 the model was trained on."
    )

    @model_validator(mode="after")
    def _check_conditioning(self) -> ConditioningConfig:
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError("speaker names must be unique")
        if self.cond_kernel_size % 2 != 1:
            raise ValueError(f"cond_kernel_size must be odd, got {self.cond_kernel_size}")
        if self.excitation and self.pitch and self.pitch.f0_max > self.excitation.f0_max:
            raise ValueError(
                f"pitch.f0_max {self.pitch.f0_max:g} Hz is above excitation.f0_max "
                f"{self.excitation.f0_max:g} Hz: the tracker's F0 would be refused"
            )
        return self


def build_conditioner(
    config: ConditioningConfig, spec: FeatureSpec, out_channels: int, interpolate: bool = True
) -> Conditioner:
    """The conditioner of a model with `config`, conditioned on `spec`'s features.

    Args:
        config (ConditioningConfig): The model config (its conditioner fields).
        spec (FeatureSpec): Sets n_mels and the hop the conditioning is upsampled by.
        out_channels (int): Conditioning channels of every layer of the model, stacked.
        interpolate (bool): Upsample with the learned interpolation; False: the model holds
            each frame's conditioning for hop samples.
    """
    return Conditioner(
        n_mels=spec.n_mels,
        hidden_channels=config.cond_channels,
        out_channels=out_channels,
        hop_length=spec.hop_length,
        encoder_layers=config.cond_layers,
        encoder_kernel_size=config.cond_kernel_size,
        n_speakers=len(config.speakers),
        speaker_dim=config.speaker_dim,
        interpolate=interpolate,
    )


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
    """Mel frames and an optional speaker to per-layer gate conditioning.

    A small convolutional encoder gives each frame some context; one 1x1 projection makes
    every layer's conditioning at frame rate (cheap: hop times fewer positions); the
    upsampler brings it to sample rate, or, without one, the layers hold each frame for hop
    samples. The speaker embedding is projected once per utterance and broadcast over time.

    Args:
        n_mels (int): Mel bands of the input.
        hidden_channels (int): Width of the frame-rate encoder.
        out_channels (int): Total conditioning channels (layers * 2 * gate_channels).
        hop_length (int): Samples per frame.
        encoder_layers (int): Convolutions in the frame-rate encoder.
        encoder_kernel_size (int): Their kernel size (odd; centred, looks ahead and back).
        n_speakers (int): Speakers known to the model; 0 for a single-speaker model.
        speaker_dim (int): Size of the speaker embedding.
        interpolate (bool): Whether to upsample with the learned interpolation (False: the
            conditioning stays at frame rate, each frame held for hop samples).

    Attributes:
        context (int): Frames each side of a frame that its conditioning depends on: each
            centred encoder convolution reaches kernel // 2 frames, and the interpolation
            mixes each frame with its neighbours (one more frame).
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
        self.n_mels = n_mels
        self.context = encoder_layers * (encoder_kernel_size // 2) + (1 if interpolate else 0)

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
        self.check_mel(mel)
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

    def check_mel(self, mel: torch.Tensor) -> None:
        """Raise ValueError unless `mel` is (B, n_mels, frames)."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"mel must be (B, {self.n_mels}, frames), got {tuple(mel.shape)}")

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

    def window(
        self,
        frames: torch.Tensor,
        bias: torch.Tensor | None,
        start: int = 0,
        stop: int | None = None,
    ) -> torch.Tensor:
        """The conditioning the layers read for frames [start, stop) of `project`'s output.

        Args:
            frames (Tensor): Frame-rate conditioning (B, out_channels, F).
            bias (Tensor | None): Speaker bias (B, out_channels, 1), or None.
            start (int): First frame wanted.
            stop (int | None): One past the last frame wanted; F when None.

        Returns:
            Tensor: (B, out_channels, (stop - start) * hop_length) with the upsampler, equal
            to the same samples of the whole sequence upsampled at once; without it, at frame
            rate (B, out_channels, stop - start).
        """
        if self.upsampler is None:
            cond = frames[..., start:stop]
        else:
            cond = self.upsampler(frames, start, stop)
        return cond if bias is None else cond + bias

    def forward(
        self,
        mel: torch.Tensor,
        speaker: torch.Tensor | None = None,
        mel_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """mel (B, n_mels, F), speaker (B,) or None -> (B, out_channels, F * hop or F).

        `mel_lengths` as in `project`.
        """
        return self.window(*self.project(mel, speaker, mel_lengths))


class ConditionedModel(nn.Module):
    """A model conditioned on mel frames and an optional speaker through one `Conditioner`.

    Args:
        config (ConditioningConfig): Architecture; kept as `model.config`.
        spec (FeatureSpec): Features the model is conditioned on; kept as `model.spec`.
        cond_channels (int): Conditioning channels of every layer of the model, stacked.
        interpolate (bool): As in `build_conditioner`.
    """

    def __init__(
        self,
        config: ConditioningConfig,
        spec: FeatureSpec,
        cond_channels: int,
        interpolate: bool = True,
    ):
        super().__init__()
        self.config = config
        self.spec = spec
        self.conditioner = build_conditioner(config, spec, cond_channels, interpolate)

    @property
    def conditioning_context(self) -> int:
        """Mel frames each side of a frame that its conditioning depends on."""
        return self.conditioner.context

    def excitation_signal(
        self,
        f0: torch.Tensor | None,
        phase: torch.Tensor | None,
        frames: int | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """This model's excitation e of frames [start, stop) and the phase it ends on;
        (None, None) for a mel-only model (`wavenet.excitation_conditioning.pitch_excitation`)."""
        spec = self.config.excitation
        return pitch_excitation(self.spec, spec, f0, phase, frames, start, stop)
