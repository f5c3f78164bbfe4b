"""The copy-synthesis rows of `wavenet evaluate`: which systems vocode a split's clips, from
which F0, and how each row is scored against the real recordings.

The systems of one split, in the order of the report's rows:

    mel-only model    "<kind> copy synthesis"                  the real mel
    pitch-aware       "<kind> copy synthesis, tracker F0"      the corpus's cached F0
      with --pitch    "<kind> copy synthesis, predicted F0"    F0 predicted from the mel (the
                                                               service's route for a mel alone)
    harmonic source   "source (untrained start), <route> F0"   after each route's row
    always            "Griffin-Lim (32 it.)"                    the same mel frames

The untrained start is the student's own config with fresh weights: source gains 1, every
flow after the source the identity, i.e. the training-free harmonic-plus-noise synthesis that
training starts from (`wavenet.student.Student`). Each clip's excitation starts at its own
phase (`training.eval_clips.clip_phase`) in every row, and every system draws the same seeded
noise, so a student and its untrained start differ in their weights alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training import metrics
from training.config import ConfigError
from training.eval_clips import Clip
from training.griffin_lim import GRIFFIN_LIM_ITERATIONS, griffin_lim
from training.sampling import vocode
from wavenet.excitation import frame_centre
from wavenet.features import FeatureSpec
from wavenet.pitch import check_pitch_spec

__all__ = [
    "METRICS",
    "System",
    "check_predictor",
    "f0_routes",
    "score",
    "score_systems",
    "synthesise",
]

# Every synthesis row's scores, in the report's column order.
METRICS = ("log_mel_l1", "mrstft", "pesq_wb", "stoi", "periodicity_voiced", "noise_floor_db")
ROUTE_LABELS = {"tracker": "tracker F0", "predictor": "predicted F0"}
GRIFFIN_LIM = f"Griffin-Lim ({GRIFFIN_LIM_ITERATIONS} it.)"


@dataclass
class System:
    """One synthesis row of a split: its name, F0 route (None: mel only) and the audio it
    made of each clip (possibly the first part of it, when a time budget ran out)."""

    name: str
    route: str | None
    audio: list[np.ndarray]


def check_predictor(model: nn.Module, predictor: nn.Module, where: str) -> None:
    """Refuse a pitch predictor that cannot feed `model`.

    Raises:
        ConfigError: if `model` is mel-only, or the predictor is not a pitch model with the
            model's FeatureSpec.
        PitchSpecError: if the model records a tracker other than the predictor's.
    """
    if model.config.excitation is None:
        raise ConfigError(f"--pitch feeds a pitch-aware model; this {model.kind} is mel-only")
    if predictor.kind != "pitch" or predictor.spec != model.spec:
        raise ConfigError(f"{where}: not a pitch predictor with the model's FeatureSpec")
    if model.config.pitch is not None:
        check_pitch_spec(model.config.pitch, predictor.config.pitch, "the model", where)


@torch.no_grad()
def f0_routes(
    model: nn.Module, clips: list[Clip], predictor: nn.Module | None, device: torch.device
) -> dict[str | None, list[torch.Tensor] | None]:
    """Each route's F0 per clip (frames,): {None: None} for a mel-only model; "tracker" (and
    "predictor" with a pitch predictor) for a pitch-aware one.

    Raises:
        ConfigError: if a pitch-aware model meets clips without F0.
    """
    if model.config.excitation is None:
        return {None: None}
    if any(clip.f0 is None for clip in clips):
        raise ConfigError(f"the {model.kind} is pitch-aware: the clips need F0 (prepare again)")
    routes = {"tracker": [torch.from_numpy(clip.f0).float() for clip in clips]}
    if predictor is not None:
        predict = predictor.predict_f0
        routes["predictor"] = [predict(clip.mel[None].to(device))[0].cpu() for clip in clips]
    return routes


def untrained_start(model: nn.Module) -> nn.Module | None:
    """A student with a source, as training starts it (fresh weights); None for others."""
    if model.kind != "student" or not model.config.source:
        return None
    device = next(model.parameters()).device
    return type(model)(model.config, model.spec).eval().to(device)


def synthesise(
    model: nn.Module,
    clips: list[Clip],
    routes: dict[str | None, list[torch.Tensor] | None],
    max_seconds: float,
) -> list[System]:
    """Vocode the clips with every system of the split, `max_seconds` shared between them."""
    start = untrained_start(model)
    # The teacher makes one sample per step, so small chunks keep close to the budget; the
    # student recomputes a receptive field of context per chunk, so it wants large ones.
    sequential = model.kind == "teacher"
    options = dict(frames_per_chunk=2 if sequential else 64, one_thread=sequential)
    mels, speakers = [clip.mel for clip in clips], [clip.speaker for clip in clips]
    phases = torch.tensor([clip.phase for clip in clips], dtype=torch.float64)
    named = [(f"{model.kind} copy synthesis", model)]
    if start is not None:
        named.append(("source (untrained start)", start))
    runs = len(routes) * len(named)
    systems = []
    for route, f0s in routes.items():
        pitch = {} if f0s is None else {"f0s": f0s, "phases": phases}
        suffix = "" if route is None else f", {ROUTE_LABELS[route]}"
        for name, system in named:
            made = vocode(system, mels, speakers, max_seconds / runs, **options, **pitch)
            systems.append(System(name + suffix, route, made))
    return systems


def score(
    reference: np.ndarray,
    estimate: np.ndarray,
    spec: FeatureSpec,
    f0: np.ndarray | None = None,
) -> tuple[dict, list]:
    """All audio metrics of one clip, and notes on any that did not apply.

    periodicity_voiced is `training.metrics.voiced_periodicity` in the frames where the
    tracker's F0 `f0` (frames,) is voiced (None without F0); noise_floor_db is
    `training.metrics.noise_floor_db` on the mel's hop blocks.
    """
    rate = spec.sample_rate
    pesq, pesq_note = metrics.pesq_wideband(reference, estimate, rate)
    stoi, stoi_note = metrics.stoi_score(reference, estimate, rate)
    notes = [note for note in (pesq_note, stoi_note) if note]
    voiced = _voiced_periodicity(estimate, f0, spec)
    if voiced is None:
        notes.append("periodicity (voiced): no voiced frame (tracker F0) to score")
    floor = metrics.noise_floor_db(reference, estimate, spec.hop_length)
    if floor is None:
        notes.append("noise floor: no frame of the recording is 50 dB below its peak")
    values = {
        "log_mel_l1": metrics.log_mel_l1(reference, estimate, spec),
        "mrstft": metrics.multi_resolution_stft_distance(reference, estimate, rate),
        "pesq_wb": pesq,
        "stoi": stoi,
        "periodicity_voiced": voiced,
        "noise_floor_db": floor,
    }
    return values, notes


def _voiced_periodicity(audio: np.ndarray, f0: np.ndarray | None, spec: FeatureSpec):
    """`training.metrics.voiced_periodicity` where `f0` (frames,) is voiced; None without F0."""
    if f0 is None:
        return None
    centre = frame_centre(spec)
    return metrics.voiced_periodicity(audio, f0 > 0, spec.hop_length, spec.sample_rate, centre)


def mean_row(system: str, scores: list[dict]) -> dict:
    """Average each metric over the clips where it applied (None where it never did)."""
    row: dict = {"system": system}
    for name in METRICS:
        values = [s[name] for s in scores if s.get(name) is not None]
        row[name] = float(np.mean(values)) if values else None
    return row


def score_systems(clips: list[Clip], systems: list[System], spec: FeatureSpec) -> dict:
    """Score every system, and Griffin-Lim from the same frames, against the real clips.

    Griffin-Lim inverts as many frames of each clip as the longest system made of it.

    Returns:
        dict: "rows" (one per system, then Griffin-Lim: system, route, METRICS, each the
        mean over the clips), "clips" (id, seconds the first system made, complete, and
        "scores": each system's METRICS on that clip, by system), "real" (the recordings' own
        periodicity_voiced, the reference for that column) and "notes" (why a metric is
        missing, with the clips it concerns).
    """
    per_system: dict[str, list[dict]] = {system.name: [] for system in systems}
    per_system[GRIFFIN_LIM] = []
    missing: dict[str, list[str]] = {}
    made_of = {system.name: system.audio for system in systems}
    for index, clip in enumerate(clips):
        length = max(len(audio[index]) for audio in made_of.values())
        frames = math.ceil(length / spec.hop_length)
        made = {name: audio[index] for name, audio in made_of.items()}
        made[GRIFFIN_LIM] = griffin_lim(clip.mel[:, :frames], spec)[:length]
        for name, audio in made.items():
            values, notes = score(clip.audio[: len(audio)], audio, spec, clip.f0)
            per_system[name].append(values)
            for note in notes:
                ids = missing.setdefault(note, [])
                ids += [clip.id] if clip.id not in ids else []
    routes = {system.name: system.route for system in systems}
    rows = [{**mean_row(name, s), "route": routes.get(name)} for name, s in per_system.items()]
    first = systems[0].audio
    clip_rows = [
        {
            "id": clip.id,
            "seconds": len(audio) / spec.sample_rate,
            "complete": len(audio) == spec.samples_for(clip.mel.shape[-1]),
            "scores": {name: scores[index] for name, scores in per_system.items()},
        }
        for index, (clip, audio) in enumerate(zip(clips, first, strict=True))
    ]
    real = [_voiced_periodicity(clip.audio, clip.f0, spec) for clip in clips]
    real = [value for value in real if value is not None]
    return {
        "rows": rows,
        "clips": clip_rows,
        "real": {"periodicity_voiced": float(np.mean(real)) if real else None},
        "notes": [f"{note} ({', '.join(ids)})" for note, ids in missing.items()],
    }
