"""F0 at synthesis time: where a pitch-aware model's F0 comes from, its shift, its phase.

The service and `wavenet synthesize` give a pitch-aware model (config.excitation) F0 per mel
frame, in Hz, 0 = unvoiced, from one of three sources:

    input            F0                                              source
    mel and f0       the f0 sent, checked (length, values, range)    "request"
    mel alone        PitchPredictor.predict_f0(mel)                  "predictor"
    audio            track_f0(audio, spec, model.config.pitch)       "tracker"

and then shifted by s semitones, the mel (and so the formants) kept:

    f0'_i = min(f0_i * 2^(s / 12), f0_max)   where f0_i > 0 (voiced)
    f0'_i = 0                                 where f0_i = 0 (unvoiced)

f0_max is the model's `excitation.f0_max`, the most its excitation accepts: an F0 sent above
it is refused, a shifted (or tracked, or predicted) one is clamped to it. A shift never
voices or unvoices a frame. The excitation starts at phase phi_0 = `seeded_phase(seed)`.

A shifted F0 comes with the mel's envelope (`mel_envelope`) in place of the mel: the 80
bands resolve the low harmonics of the voice that was recorded, and a source fitted to that
comb would sing the old pitch back; the envelope keeps the formants and drops the comb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wavenet.errors import AudioError, CheckpointError
from wavenet.excitation import ExcitationSpec, check_f0, initial_phase
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, pitch_differences, track_f0

__all__ = [
    "ENVELOPE_COEFFICIENTS",
    "PITCH_SHIFT_LIMIT",
    "SynthesisF0",
    "default_predictor_path",
    "is_pitch_aware",
    "load_pitch_predictor",
    "mel_envelope",
    "seeded_phase",
    "shift_f0",
]

# Semitones either way: an octave, the range over which a voice keeps its character.
PITCH_SHIFT_LIMIT = 12.0
# DCT coefficients of the log-mel kept by `mel_envelope`: 24 of 80 keep the formants and drop
# the harmonic comb of voices above ~100 Hz (measured: an untrained source student shifted
# a 167 Hz voice by +12 and -12 to 2.0x and 0.5x its tracked F0, against 1.0x on the mel).
ENVELOPE_COEFFICIENTS = 24


def mel_envelope(log_mel: torch.Tensor, keep: int = ENVELOPE_COEFFICIENTS) -> torch.Tensor:
    """The log-mel's smooth envelope over frequency, by cepstral liftering:

        C = D log_mel,   C[k] = 0 for k >= keep,   envelope = D^T C

    with D the orthonormal DCT-II over the mel axis (n_mels, n_mels).

    Args:
        log_mel (Tensor): (..., n_mels, frames).
        keep (int): Low-quefrency coefficients kept.

    Returns:
        Tensor: The envelope, the shape and dtype of `log_mel`.
    """
    bands = log_mel.shape[-2]
    k = torch.arange(bands, dtype=torch.float64).unsqueeze(1)
    n = torch.arange(bands, dtype=torch.float64).unsqueeze(0)
    dct = torch.cos(torch.pi * (n + 0.5) * k / bands) * (2.0 / bands) ** 0.5
    dct[0] /= 2.0**0.5
    lifter = dct[:keep].to(log_mel)
    return lifter.transpose(0, 1) @ (lifter @ log_mel)


def is_pitch_aware(model: nn.Module) -> bool:
    """Whether `model` takes F0 (its config has an excitation)."""
    return getattr(model.config, "excitation", None) is not None


def shift_f0(f0: torch.Tensor, semitones: float, f0_max: float) -> torch.Tensor:
    """f0' = min(f0 * 2^(s / 12), f0_max) in voiced frames (f0 > 0); unvoiced frames stay 0.

    Args:
        f0 (Tensor): F0 in Hz, 0 = unvoiced, any shape.
        semitones (float): s, within +-PITCH_SHIFT_LIMIT.
        f0_max (float): The most F0 the model accepts, Hz.

    Returns:
        Tensor: f0' with the shape and dtype of `f0`.
    """
    if not abs(semitones) <= PITCH_SHIFT_LIMIT:
        raise ValueError(
            f"pitch_shift must be within +-{PITCH_SHIFT_LIMIT:g} semitones, got {semitones}"
        )
    scaled = (f0 * 2.0 ** (semitones / 12.0)).clamp(max=f0_max)
    return torch.where(f0 > 0, scaled, torch.zeros_like(f0))


def seeded_phase(seed: int | None) -> float:
    """phi_0 of a synthesis, radians: 0 without a seed; with one, `initial_phase`'s draw
    (2 pi u, u uniform) from a CPU generator seeded with it, apart from the noise z."""
    if seed is None:
        return 0.0
    return float(initial_phase(1, torch.Generator().manual_seed(seed))[0])


def default_predictor_path(model_path: str | Path) -> Path:
    """The `pitch` folder beside a model's checkpoint folder: models/default/student ->
    models/default/pitch, where the shipped pitch predictor is."""
    return Path(model_path).parent / "pitch"


def load_pitch_predictor(path: str | Path, model: nn.Module, device=None) -> nn.Module:
    """The pitch predictor at `path`, checked to suit the pitch-aware `model`.

    Raises:
        CheckpointError: naming `path`: not loadable, not a pitch checkpoint, reading other
            features than the model, or trained on F0 tracked otherwise than the model's.
    """
    from wavenet.checkpoint import load_model

    device = device or next(model.parameters()).device
    predictor = load_model(path, device=device)
    if predictor.kind != "pitch":
        raise CheckpointError(f"{path} is a {predictor.kind} checkpoint, not a pitch predictor")
    if predictor.spec != model.spec:
        ours, theirs = predictor.spec.model_dump(), model.spec.model_dump()
        differences = [f"{k} {ours[k]!r} != {theirs[k]!r}" for k in ours if ours[k] != theirs[k]]
        raise CheckpointError(
            f"{path}: the pitch predictor reads other features than the model "
            f"({'; '.join(differences)} [predictor != model])"
        )
    tracker = model.config.pitch
    if tracker is not None and pitch_differences(predictor.config.pitch, tracker):
        differences = "; ".join(pitch_differences(predictor.config.pitch, tracker))
        raise CheckpointError(
            f"{path}: the pitch predictor learned F0 tracked otherwise than the model's "
            f"({differences} [predictor != model])"
        )
    return predictor.eval()


@dataclass
class SynthesisF0:
    """A pitch-aware model's F0 at synthesis time: checked, predicted, tracked and shifted.

    Attributes:
        spec (FeatureSpec): The model's features (frames of the F0).
        excitation (ExcitationSpec): The model's excitation; its f0_max bounds F0.
        tracker (PitchSpec): Tracker settings for audio: the model's, else the defaults.
        predictor (nn.Module | None): A `PitchPredictor` for mels sent without F0.
    """

    spec: FeatureSpec
    excitation: ExcitationSpec
    tracker: PitchSpec
    predictor: nn.Module | None = None

    @classmethod
    def for_model(cls, model: nn.Module, predictor: nn.Module | None = None) -> SynthesisF0:
        """The F0 handling of a pitch-aware `model` (ValueError for a mel-only one)."""
        if not is_pitch_aware(model):
            raise ValueError("the model is mel-only (not pitch-aware): it takes no F0")
        tracker = model.config.pitch or PitchSpec()
        return cls(model.spec, model.config.excitation, tracker, predictor)

    @property
    def f0_max(self) -> float:
        """The most F0 the model accepts, Hz (its excitation's f0_max)."""
        return self.excitation.f0_max

    def check(self, f0: torch.Tensor, frames: int, name: str = "f0") -> torch.Tensor:
        """A sent F0 track (frames,), Hz, 0 = unvoiced, as float32; AudioError naming what is
        wrong: the wrong number of frames, NaN or Inf, negative, or above f0_max."""
        if f0.dim() != 1:
            raise AudioError(f"{name} must be one value per mel frame, got shape {tuple(f0.shape)}")
        if f0.shape[0] != frames:
            raise AudioError(
                f"{name} has {f0.shape[0]} values but the mel has {frames} frames "
                "(one F0 per frame, in Hz, 0 = unvoiced)"
            )
        f0 = f0.float()
        try:
            check_f0(f0.unsqueeze(0), frames)
        except ValueError as error:
            raise AudioError(str(error).replace("f0", name, 1)) from None
        if (f0 > self.f0_max).any():
            raise AudioError(
                f"{name} must be at most {self.f0_max:g} Hz, the model's range (its "
                f"excitation.f0_max), got {float(f0.max()):g} Hz"
            )
        return f0

    def predict(self, mel: torch.Tensor) -> torch.Tensor:
        """F0 (frames,) predicted from a mel (n_mels, frames), on the predictor's device."""
        if self.predictor is None:
            raise ValueError("no pitch predictor is loaded: send f0 with the mel")
        device = next(self.predictor.parameters()).device
        with torch.inference_mode():
            return self.predictor.predict_f0(mel.unsqueeze(0).to(device).float())[0]

    def track(self, audio: torch.Tensor | np.ndarray) -> torch.Tensor:
        """F0 (frames,) tracked from audio (samples,) at the model's rate, on the CPU."""
        samples = np.asarray(audio, dtype=np.float64)
        return torch.from_numpy(track_f0(samples, self.spec, self.tracker))

    def shifted(self, f0: torch.Tensor, semitones: float) -> torch.Tensor:
        """`shift_f0` within this model's range (also clamps a tracked or predicted F0)."""
        return shift_f0(f0, semitones, self.f0_max)

    @staticmethod
    def mel_for(mel: torch.Tensor, semitones: float) -> torch.Tensor:
        """The mel a pitch-aware model is given with F0 shifted by `semitones`: the mel
        itself at 0, else its envelope (module docstring)."""
        return mel if semitones == 0 else mel_envelope(mel)

    @staticmethod
    def shift_options(model: nn.Module, semitones: list[float], device) -> dict:
        """{"shifted": (B,) bool, the items shifted by a non-zero number of semitones} for a
        student with a source, whose rounds then hold those items' voiced noise down
        (`wavenet.source.training_free_parts`); {} for any other model."""
        if getattr(model, "source", None) is None:
            return {}
        return {"shifted": torch.tensor([s != 0 for s in semitones], device=device)}

    def batch(self, f0s: list[torch.Tensor], semitones: list[float]) -> torch.Tensor:
        """Items' F0 (frames_i,) each shifted by its own semitones, zero-padded (unvoiced) to
        the longest: (B, max frames), as a padded batch of mels needs."""
        frames = max(len(f0) for f0 in f0s)
        shifted = [self.shifted(f0, s) for f0, s in zip(f0s, semitones, strict=True)]
        return torch.stack([torch.nn.functional.pad(f0, (0, frames - len(f0))) for f0 in shifted])
