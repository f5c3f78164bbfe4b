"""mu-law companding (mu = 255), continuous and quantised.

compress:  y = sign(x) ln(1 + mu |x|) / ln(1 + mu),  x, y in [-1, 1]
expand:    x = sign(y) ((1 + mu)^|y| - 1) / mu
Quantisation maps y to one of 256 classes k = round((y + 1) / 2 * mu), whose centres are
y_k = 2 k / mu - 1: bins of width 2 / mu on the companded axis.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

__all__ = [
    "BIN_WIDTH",
    "MU",
    "NUM_CLASSES",
    "class_centres",
    "compress",
    "decode",
    "encode",
    "expand",
    "quantize_companded",
]

MU = 255
NUM_CLASSES = MU + 1
BIN_WIDTH = 2.0 / MU  # width of one class on the companded axis


def compress(audio: torch.Tensor) -> torch.Tensor:
    """Continuous mu-law compression of audio in [-1, 1] (differentiable)."""
    audio = audio.clamp(-1.0, 1.0)
    return torch.sign(audio) * torch.log1p(MU * audio.abs()) / math.log1p(MU)


def expand(companded: torch.Tensor) -> torch.Tensor:
    """Inverse of `compress`: companded values in [-1, 1] back to linear audio (differentiable)."""
    companded = companded.clamp(-1.0, 1.0)
    return torch.sign(companded) * torch.expm1(companded.abs() * math.log1p(MU)) / MU


def encode(audio: torch.Tensor) -> torch.Tensor:
    """Audio in [-1, 1] to mu-law classes 0..255 (int64), via torchaudio."""
    return AF.mu_law_encoding(audio.clamp(-1.0, 1.0), NUM_CLASSES)


def decode(classes: torch.Tensor) -> torch.Tensor:
    """mu-law classes 0..255 to linear audio in [-1, 1], via torchaudio."""
    return AF.mu_law_decoding(classes, NUM_CLASSES)


def class_centres(classes: torch.Tensor) -> torch.Tensor:
    """Companded value y_k = 2 k / mu - 1 of each class k."""
    return classes.float() * (2.0 / MU) - 1.0


def quantize_companded(companded: torch.Tensor) -> torch.Tensor:
    """Class of each companded value: k = round((y + 1) / 2 * mu), clamped to 0..255."""
    return torch.round((companded.clamp(-1.0, 1.0) + 1.0) * (MU / 2.0)).long()
