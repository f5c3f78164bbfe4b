"""A WaveNet-like speech classifier whose hidden activations drive the perceptual loss.

It reads raw audio and predicts, per mel frame, a phone or pseudo-phone unit, and per
utterance, the speaker. Its layers' activations (`features`) are what the perceptual loss
compares through Gram matrices, so it must be trained first, then frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from wavenet import mulaw
from wavenet.features import FeatureSpec
from wavenet.stack import ResidualStack, StackConfig

__all__ = ["Classifier", "ClassifierConfig"]


class ClassifierConfig(BaseModel):
    """Architecture and label sets of the classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(10, gt=0, description="Gated residual blocks.")
    dilation_cycle: int = Field(10, gt=0, description="Dilations 1, 2, ..., 2^(cycle-1), repeated.")
    kernel_size: int = Field(3, ge=2, le=3, description="Taps of each dilated convolution.")
    channels: int = Field(64, gt=0, description="Residual, gate and skip width.")
    units: list[str] = Field(
        default_factory=lambda: [f"unit{i}" for i in range(64)],
        min_length=1,
        description="Frame labels: phones, or pseudo-phone clusters unit0, unit1, ...",
    )
    speakers: list[str] = Field(default_factory=list, description="Speaker names; index = id.")
    feature_layers: list[int] = Field(
        default_factory=lambda: [1, 4, 9], description="Blocks whose outputs `features` returns."
    )

    @property
    def stack(self) -> StackConfig:
        """Layout of the residual stack: one width for the residual, gate and skip channels."""
        width = self.channels
        return StackConfig.of(
            self, residual_channels=width, gate_channels=width, skip_channels=width
        )


class Classifier(nn.Module):
    """Frame-level unit classifier and utterance-level speaker classifier on raw audio.

    Args:
        config (ClassifierConfig): Architecture and labels.
        spec (FeatureSpec): Sets the frame rate (hop_length) the unit labels follow.
    """

    kind = "classifier"

    def __init__(self, config: ClassifierConfig, spec: FeatureSpec):
        super().__init__()
        if any(not 0 <= index < config.layers for index in config.feature_layers):
            raise ValueError(f"feature_layers must be in [0, {config.layers})")
        self.config = config
        self.spec = spec
        width = config.channels
        self.input = nn.Conv1d(1, width, 1)
        self.blocks = ResidualStack(config.stack)
        self.unit_head = nn.Conv1d(width, len(config.units), 1)
        self.speaker_head = nn.Linear(width, len(config.speakers)) if config.speakers else None

    @property
    def receptive_field(self) -> int:
        """Samples that shape one position of the last layer."""
        return self.blocks.config.receptive_field

    def _run(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hidden activations of the feature layers and the summed skips (B, C, T)."""
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, T), got {tuple(audio.shape)}")
        # Companding evens out the scale of quiet and loud passages, as in the vocoders.
        h = self.input(mulaw.compress(audio).unsqueeze(1))
        skips, features = self.blocks(h, keep=self.config.feature_layers)
        return features, F.relu(skips)

    def features(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """Skip activations of `feature_layers`: audio (B, T) -> list of (B, channels, T)."""
        return self._run(audio)[0]

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit logits per frame and speaker logits per utterance.

        Args:
            audio (Tensor): Waveform in [-1, 1] (B, T).

        Returns:
            tuple: unit logits (B, n_units, ceil(T / hop)) on the FeatureSpec's frames, and
            speaker logits (B, n_speakers), or None for a model without speakers.
        """
        _, hidden = self._run(audio)
        frames = self.spec.frames_for(audio.shape[-1])
        hidden = F.pad(hidden, (0, frames * self.spec.hop_length - audio.shape[-1]))
        frame_hidden = F.avg_pool1d(hidden, self.spec.hop_length)
        units = self.unit_head(frame_hidden)
        if self.speaker_head is None:
            return units, None
        return units, self.speaker_head(frame_hidden.mean(dim=-1))
