"""Pitch (F0) per mel frame: the `PitchSpec` a prepared corpus and a model carry, and `track_f0`.

One function, `track_f0`, computes F0 for training labels, evaluation and serving alike, at
exactly the frame positions of `FeatureSpec.extract`: frame i is centred on hop block i.

The tracker is Praat's autocorrelation method (Boersma 1993, "Accurate short-term analysis of
the fundamental frequency and the harmonics-to-noise ratio of a sampled sound"), run through
parselmouth, with a Viterbi path over per-frame candidates; unvoiced frames are 0 Hz. On
recorded prompts resynthesised by WORLD with a known F0, it made the fewest gross (octave)
errors (0.5% of voiced frames, against 0.75% for WORLD's DIO + StoneMask and 3.6% for
Harvest) and called almost no unvoiced frame voiced, at about 280 times real time on one
core; `scripts/compare_pitch_trackers.py` gives the whole comparison.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavenet.errors import AudioError
from wavenet.features import FeatureSpec

__all__ = ["PitchSpec", "PitchSpecError", "check_pitch_spec", "pitch_differences", "track_f0"]


class PitchSpecError(AudioError):
    """F0 labels made with one PitchSpec meet a model or corpus that expects another."""


class PitchSpec(BaseModel):
    """How F0 is tracked. Saved with every prepared corpus (pitch_spec.json) and F0 model.

    The Praat fields keep Praat's names and defaults unless a comment says why not.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Only one tracker for now; the name is saved so that labels from another never mix.
    tracker: Literal["praat_ac"] = Field("praat_ac", description="Pitch tracker.")
    # Lowest F0 searched. It also sets the analysis window, periods_per_window / f0_min
    # (60 ms at 50 Hz): low male voices and creak reach 60-70 Hz.
    f0_min: float = Field(50.0, gt=0, description="Lowest F0 in Hz.")
    # Highest F0 searched. The recorded voices of the default corpus reach p95 of 250-450 Hz;
    # a ceiling of 800 or 1000 Hz finds nothing more there than noise and fricatives read as
    # voice (1-10% of the voiced frames of the KLettres clips above 600 Hz) and more octave-up
    # errors (gross errors 0.73% against 0.53% at 600). Must stay below Nyquist.
    f0_max: float = Field(600.0, gt=0, description="Highest F0 in Hz.")
    # A frame is voiced when its best autocorrelation peak exceeds this (Praat's 0.45). Lower
    # values voice more of the quiet ends of voiced stretches, and more gross errors with them.
    voicing_threshold: float = Field(0.45, ge=0, le=1, description="Voicing strength needed.")
    # Frames whose peak is below this fraction of the utterance's peak are unvoiced (Praat's
    # 0.03, -30 dB). 0.01 voices more quiet voiced frames of clean prompts, but tracks the
    # noise floor of the KLettres recordings (about -40 dB RMS) as voice of 500-900 Hz.
    silence_threshold: float = Field(0.03, ge=0, le=1, description="Silence, re global peak.")
    # Favours higher candidates per octave, against sub-harmonic (octave-down) errors.
    octave_cost: float = Field(0.01, ge=0, description="Cost per octave down, per frame.")
    # Cost of an octave jump between frames: the Viterbi path's guard against octave errors.
    octave_jump_cost: float = Field(0.35, ge=0, description="Cost of an octave jump.")
    # Cost of a voicing change between frames: higher keeps voiced stretches whole.
    voiced_unvoiced_cost: float = Field(0.14, ge=0, description="Cost of a voicing change.")
    # Candidates kept per frame for the Viterbi path.
    max_candidates: int = Field(15, ge=2, description="Pitch candidates per frame.")
    # Praat's "very accurate": 6 periods in a Gaussian window instead of 3 in a Hann window;
    # twice the cost, and it smears fast pitch changes.
    very_accurate: bool = Field(False, description="Gaussian 6-period window.")

    @model_validator(mode="after")
    def _check_range(self) -> PitchSpec:
        if self.f0_min >= self.f0_max:
            raise ValueError(f"f0_min ({self.f0_min}) must be below f0_max ({self.f0_max})")
        return self

    @property
    def window_seconds(self) -> float:
        """Length of Praat's analysis window: periods per window / f0_min."""
        return (6.0 if self.very_accurate else 3.0) / self.f0_min


def track_f0(audio: np.ndarray, spec: FeatureSpec, pitch: PitchSpec | None = None) -> np.ndarray:
    """F0 in Hz at the centre of each mel frame of `audio`; 0 where the frame is unvoiced.

    Frame i is centred on hop block i, as in `FeatureSpec.extract`. Praat centres its frame
    grid in the sound it is given, and makes floor((D - W) / hop) + 1 frames of a sound of D
    samples with a window of W; so the audio is zero-padded to a whole number of hops (as the
    mel is) and by P = W / 2 - hop / 4 on both sides, which gives exactly `frames` frames on
    the mel's centres (the quarter hop keeps the count away from the floor's edge):

        padded:   | P zeros |  block 0  |  block 1  | ... | block F-1 (zero-padded) | P zeros |
        centres:                 ^ 0         ^ 1                  ^ F-1
        frame i:  centre at P + (i + 1/2) * hop, window W around it

    Args:
        audio (ndarray): Waveform (samples,) at `spec.sample_rate`, at least one sample.
        spec (FeatureSpec): The features the F0 goes with (sample rate and hop).
        pitch (PitchSpec | None): Tracker settings; None for the defaults.

    Returns:
        ndarray: float32 F0 (frames,), frames = ceil(samples / hop_length), as the mel has.

    Raises:
        ValueError: if `audio` is not 1-D, is empty or holds NaN/Inf, or f0_max is above
            the Nyquist frequency.
    """
    import parselmouth

    pitch = pitch or PitchSpec()
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be (samples,), got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty")
    if not np.isfinite(audio).all():
        raise ValueError("audio holds NaN or Inf")
    rate, hop = spec.sample_rate, spec.hop_length
    if pitch.f0_max >= rate / 2:
        raise ValueError(f"f0_max ({pitch.f0_max} Hz) must be below Nyquist ({rate / 2} Hz)")
    frames = spec.frames_for(audio.size)
    side = max(0, round(pitch.window_seconds * rate / 2 - hop / 4))
    padded = np.zeros(frames * hop + 2 * side, dtype=np.float64)
    padded[side : side + audio.size] = audio
    track = parselmouth.Sound(padded, rate).to_pitch_ac(
        time_step=hop / rate,
        pitch_floor=pitch.f0_min,
        max_number_of_candidates=pitch.max_candidates,
        very_accurate=pitch.very_accurate,
        silence_threshold=pitch.silence_threshold,
        voicing_threshold=pitch.voicing_threshold,
        octave_cost=pitch.octave_cost,
        octave_jump_cost=pitch.octave_jump_cost,
        voiced_unvoiced_cost=pitch.voiced_unvoiced_cost,
        pitch_ceiling=pitch.f0_max,
    )
    times = track.xs()
    expected = (side + (np.arange(frames) + 0.5) * hop) / rate
    # An invariant of the padding above; a wrong grid would misalign every label silently.
    assert len(times) == frames and np.allclose(times, expected, atol=1e-9), (len(times), frames)
    f0 = track.selected_array["frequency"]
    return np.where(np.isfinite(f0), f0, 0.0).astype(np.float32)


def pitch_differences(ours: PitchSpec, theirs: PitchSpec) -> list[str]:
    """`field ours != theirs` for each setting that differs (empty when they agree)."""
    a, b = ours.model_dump(mode="json"), theirs.model_dump(mode="json")
    return [f"{name} {a[name]!r} != {b[name]!r}" for name in a if a[name] != b[name]]


def check_pitch_spec(
    expected: PitchSpec, found: PitchSpec | None, expected_from: str, found_in: str
) -> None:
    """Refuse F0 labels made with other tracker settings than a model expects.

    Args:
        expected (PitchSpec): What the model was (or is to be) trained with.
        found (PitchSpec | None): What the data was tracked with; None when it has no F0.
        expected_from (str): Names the model or config, for the message.
        found_in (str): Names the data (e.g. a prepared folder), for the message.

    Raises:
        PitchSpecError: naming every setting that differs, or saying the data has no F0.
    """
    if found is None:
        raise PitchSpecError(
            f"{found_in}: has no F0 (no pitch_spec.json), but {expected_from} needs it: "
            "prepare the corpus again with `wavenet prepare`"
        )
    differences = pitch_differences(expected, found)
    if differences:
        raise PitchSpecError(
            f"{found_in}: its F0 was tracked with other settings than {expected_from}'s "
            f"({'; '.join(differences)} [{expected_from} != {found_in}])"
        )
