"""Acoustic features: the `FeatureSpec` every model carries, and log-mel extraction.

One function, `FeatureSpec.extract`, computes features for training, evaluation and serving
alike, so a model never sees features computed differently from the ones it was trained on.

Framing rule: audio of `samples` samples gives `frames = ceil(samples / hop_length)` frames.
The audio is zero-padded on the right to `frames * hop_length` samples, and by
`(n_fft - hop_length) / 2` on both sides, so frame `i` is centred on the hop block
`[i * hop_length, (i + 1) * hop_length)`. A vocoder turns `frames` frames back into exactly
`frames * hop_length` samples.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torchaudio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavenet.caching import tensor_cache

__all__ = ["FeatureSpec"]


class FeatureSpec(BaseModel):
    """How audio becomes log-mel frames. Saved with every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(16000, gt=0, description="Audio sample rate in Hz.")
    n_fft: int = Field(1024, gt=0, description="FFT size in samples.")
    win_length: int = Field(1024, gt=0, description="Hann window length, at most n_fft.")
    hop_length: int = Field(256, gt=0, description="Samples between frames: one frame = hop.")
    n_mels: int = Field(80, gt=0, description="Number of mel bands.")
    f_min: float = Field(0.0, ge=0, description="Lowest mel filter edge in Hz.")
    f_max: float = Field(8000.0, gt=0, description="Highest mel filter edge in Hz, <= Nyquist.")
    log_floor: float = Field(1e-5, gt=0, description="Mel magnitudes are clamped here before ln.")
    power: float = Field(1.0, gt=0, description="1 = magnitude mel, 2 = power mel.")
    mel_scale: Literal["slaney", "htk"] = Field("slaney", description="Mel scale formula.")
    mel_norm: Literal["slaney"] | None = Field("slaney", description="Filter area normalisation.")

    @model_validator(mode="after")
    def _check_consistent(self) -> FeatureSpec:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must be <= n_fft ({self.n_fft})")
        if self.f_max > self.sample_rate / 2:
            raise ValueError(f"f_max ({self.f_max}) exceeds Nyquist ({self.sample_rate / 2})")
        if self.f_min >= self.f_max:
            raise ValueError(f"f_min ({self.f_min}) must be below f_max ({self.f_max})")
        return self

    def frames_for(self, samples: int) -> int:
        """Number of mel frames for `samples` audio samples: ceil(samples / hop)."""
        return math.ceil(samples / self.hop_length)

    def samples_for(self, frames: int) -> int:
        """Number of audio samples a vocoder produces from `frames` frames."""
        return frames * self.hop_length

    def extract(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel features of a batch of waveforms.

        Args:
            audio (Tensor): Waveforms in [-1, 1] at `sample_rate`, shape (B, samples) or (samples,).

        Returns:
            Tensor: Natural-log mel magnitudes (B, n_mels, ceil(samples / hop_length)),
            or (n_mels, frames) for a 1-D input.
        """
        squeeze = audio.dim() == 1
        if squeeze:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ValueError(f"audio must be (B, samples) or (samples,), got {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            raise ValueError("audio is empty")
        frames = self.frames_for(audio.shape[-1])
        side = self.n_fft - self.hop_length
        left = side // 2
        right = side - left + frames * self.hop_length - audio.shape[-1]
        padded = torch.nn.functional.pad(audio.float(), (left, right))
        mel = _mel_transform(self, str(padded.device))(padded)
        mel = torch.log(torch.clamp(mel, min=self.log_floor))
        assert mel.shape[-1] == frames, (mel.shape, frames)
        return mel.squeeze(0) if squeeze else mel


@tensor_cache(8)
def _mel_transform(spec: FeatureSpec, device: str) -> torchaudio.transforms.MelSpectrogram:
    """The torchaudio transform for `spec`, built once per spec and device."""
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=spec.sample_rate,
        n_fft=spec.n_fft,
        win_length=spec.win_length,
        hop_length=spec.hop_length,
        f_min=spec.f_min,
        f_max=spec.f_max,
        n_mels=spec.n_mels,
        power=spec.power,
        center=False,
        norm=spec.mel_norm,
        mel_scale=spec.mel_scale,
    ).to(device)
