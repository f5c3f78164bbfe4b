"""The pitch predictor: log-mel frames in, voicing and F0 per frame out.

A client that sends only a mel still needs F0 for the harmonic excitation. This network
reads the mel at frame rate (256 times fewer steps than a sample-rate model) and is trained
on the F0 a real pitch tracker found in the prepared corpus (`wavenet.pitch`), so it carries
that tracker's `PitchSpec` (range, settings) as well as its `FeatureSpec`.

It is non-causal: a frame's voicing and pitch are read from the frames on both sides of it,
as a tracker reads the waveform around a frame's centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec

__all__ = [
    "PitchPredictor",
    "PitchPredictorConfig",
    "log_f0_l1",
    "voicing_bce",
]


class PitchPredictorConfig(BaseModel):
    """Architecture of the pitch predictor, and the tracker whose F0 it learns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: int = Field(64, gt=0, description="Width of every hidden layer.")
    kernel_size: int = Field(
        3, ge=1, description="Frames each convolution reads; odd, centred on the frame."
    )
    dilations: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8],
        min_length=1,
        description="Dilation of each residual block, in order (one block per entry).",
    )
    pitch: PitchSpec = Field(
        default_factory=PitchSpec,
        description="The tracker (and its F0 range) of the training labels; bounds predict_f0.",
    )

    @property
    def speakers(self) -> list[str]:
        """No speakers: the predictor reads the mel alone, so it serves unseen voices."""
        return []

    @model_validator(mode="after")
    def _check_centred(self) -> PitchPredictorConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred), got {self.kernel_size}")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {self.dilations}")
        return self


class ResidualConvBlock(nn.Module):
    """h + W_out relu(conv_d(relu(h))): one non-causal dilated convolution with a skip.

    Args:
        channels (int): Input and output width.
        kernel_size (int): Odd number of taps.
        dilation (int): Frames between taps.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation  # "same" length, centred on the frame
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=padding)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C, F) -> (B, C, F)."""
        return h + self.out(F.relu(self.conv(F.relu(h))))


class PitchPredictor(nn.Module):
    """Voicing logit and log-F0 of every mel frame.

    Args:
        config (PitchPredictorConfig): Architecture and PitchSpec.
        spec (FeatureSpec): The mels it reads (n_mels, log floor, frame rate).
    """

    kind = "pitch"

    def __init__(self, config: PitchPredictorConfig, spec: FeatureSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        width, kernel = config.channels, config.kernel_size
        self.input = nn.Conv1d(spec.n_mels, width, kernel, padding=(kernel - 1) // 2)
        self.blocks = nn.ModuleList(ResidualConvBlock(width, kernel, d) for d in config.dilations)
        self.head = nn.Conv1d(width, 2, 1)
        # The log-F0 output is relative to the geometric centre of the tracker's range, so a
        # fresh network starts mid-range rather than at 1 Hz.
        self.log_f0_centre = 0.5 * (math.log(config.pitch.f0_min) + math.log(config.pitch.f0_max))

    @property
    def receptive_frames(self) -> int:
        """Mel frames that shape one output frame: 1 + (k - 1) * (1 + sum(dilations))."""
        return 1 + (self.config.kernel_size - 1) * (1 + sum(self.config.dilations))

    @property
    def receptive_field(self) -> int:
        """Samples behind one output frame: its receptive frames times hop_length."""
        return self.receptive_frames * self.spec.hop_length

    def _normalise(self, mel: torch.Tensor) -> torch.Tensor:
        """Map log-mels from [ln floor, 0] onto [-1, 1]: (mel - m) / |m|, m = ln(floor) / 2."""
        middle = 0.5 * math.log(self.spec.log_floor)
        return (mel - middle) / abs(middle)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Voicing logits and natural-log F0 per frame.

        Args:
            mel (Tensor): Log-mel (B, n_mels, F).

        Returns:
            tuple: voicing logit (B, F) (> 0 means voiced) and ln F0 in Hz (B, F),
            meaningful in voiced frames only.
        """
        if mel.dim() != 3 or mel.shape[1] != self.spec.n_mels:
            raise ValueError(f"mel must be (B, {self.spec.n_mels}, frames), got {tuple(mel.shape)}")
        h = self.input(self._normalise(mel))
        for block in self.blocks:
            h = block(h)
        voicing, log_f0 = self.head(F.relu(h)).unbind(dim=1)
        return voicing, log_f0 + self.log_f0_centre

    @torch.no_grad()
    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        """F0 in Hz per frame, 0 where unvoiced, within the PitchSpec's [f0_min, f0_max].

        Args:
            mel (Tensor): Log-mel (B, n_mels, F).

        Returns:
            Tensor: F0 (B, F), float32.
        """
        voicing, log_f0 = self(mel)
        pitch = self.config.pitch
        f0 = log_f0.float().exp().clamp(pitch.f0_min, pitch.f0_max)
        return torch.where(voicing > 0, f0, torch.zeros_like(f0))


def voicing_bce(voicing: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the voicing decision, in nats per frame.

    bce = -mean_t [v_t log sigmoid(l_t) + (1 - v_t) log(1 - sigmoid(l_t))],  v_t = [f0_t > 0]

    Args:
        voicing (Tensor): Voicing logits l (B, F).
        f0 (Tensor): Tracked F0 in Hz (B, F), 0 = unvoiced.

    Returns:
        Tensor: Scalar.
    """
    return F.binary_cross_entropy_with_logits(voicing.float(), (f0 > 0).float())


def log_f0_l1(log_f0: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Mean absolute log-F0 error over the frames the tracker found voiced.

    l1 = sum_t v_t |p_t - ln f0_t| / max(1, sum_t v_t),  v_t = [f0_t > 0]

    One unit is a factor of e (about 1,731 cents); unvoiced frames carry no pitch and add
    nothing, so a batch without voiced frames gives 0 (with a gradient path of zeros).

    Args:
        log_f0 (Tensor): Predicted ln F0 p (B, F).
        f0 (Tensor): Tracked F0 in Hz (B, F), 0 = unvoiced.

    Returns:
        Tensor: Scalar.
    """
    voiced = f0 > 0
    target = torch.log(torch.where(voiced, f0, torch.ones_like(f0)).float())
    error = (log_f0.float() - target).abs() * voiced
    return error.sum() / voiced.sum().clamp(min=1)
