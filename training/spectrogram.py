"""`wavenet spectrogram`: one held-out utterance as real audio, Griffin-Lim and each model.

Every model vocodes the clip's real mel (copy synthesis); Griffin-Lim inverts the same mel.
A pitch-aware model is given the tracker's F0 of the clip (the prepared corpus's, or for a
folder the tracker run here) and the clip's own excitation phase, as `wavenet evaluate`
gives them. The rows are drawn as linear-frequency log spectrograms (64 ms windows, so the
harmonics of any voice above 60 Hz are resolved) over a common length: a teacher samples one
step at a time within a time budget, so its row may be the clip's first part, and every row
is cut to the shortest. The tracker's F0 contour is drawn over the real row and over each
pitch-aware model's row (the F0 it was given), so harmonics can be checked against it. Each
row's title carries its periodicity (`training.metrics.periodicity`), the number that tells
harmonics from a whisper.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.config import ConfigError
from training.evaluate import griffin_lim, load_splits
from training.metrics import periodicity
from training.sampling import vocode
from wavenet.checkpoint import atomic_write_bytes, load_model
from wavenet.excitation import frame_centre

__all__ = ["ClipRows", "render", "run", "spectrogram_rows"]

N_FFT = 1024
HOP = 128


@dataclass
class ClipRows:
    """The waveforms of one clip by row title, all of one length, and the F0 contour drawn
    over a row: (frame times in seconds (F,), F0 in Hz (F,), 0 = unvoiced) by row title."""

    clip_id: str
    sample_rate: int
    rows: dict[str, np.ndarray]
    contours: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _tracker_pitch(paths: list[str | Path], models: list) -> object:
    """The PitchSpec the pitch-aware models record (None if none records one).

    Raises:
        ConfigError: if two of them record different ones.
    """
    recorded = [
        (path, model.config.pitch)
        for path, model in zip(paths, models, strict=True)
        if getattr(model.config, "excitation", None) is not None and model.config.pitch
    ]
    for path, pitch in recorded[1:]:
        if pitch != recorded[0][1]:
            raise ConfigError(f"{path}: its F0 tracker differs from {recorded[0][0]}'s")
    return recorded[0][1] if recorded else None


def spectrogram_rows(
    models: list[str | Path],
    data: str | Path,
    clip_id: str | None = None,
    max_seconds: float = 300.0,
    device: torch.device | str = "cpu",
) -> ClipRows:
    """Audio of one clip: real, Griffin-Lim, and each model's copy synthesis.

    Returns:
        ClipRows: rows "real", "Griffin-Lim" and "<kind> (<folder name>)" per model, cut to
        the same length; the tracker's F0 over "real" and each pitch-aware model's row.

    Raises:
        ConfigError: if the models' FeatureSpecs or F0 trackers differ, no clip has the
            asked-for id, or a pitch-aware model meets a clip without F0.
        PitchSpecError: if the corpus's F0 was tracked otherwise than the models record.
    """
    device = torch.device(device)
    loaded = [load_model(path, device=device) for path in models]
    spec = loaded[0].spec
    for path, model in zip(models, loaded, strict=True):
        if model.spec != spec:
            raise ConfigError(f"{path}: its FeatureSpec differs from {models[0]}'s")
    pitch = _tracker_pitch(models, loaded)
    splits = load_splits(Path(data), spec, list(loaded[0].config.speakers), pitch)
    clips = next(iter(splits.values()))  # by default the first clip of the first split
    if clip_id is not None:  # any held-out split's (val, or an unseen speaker's)
        clips = [clip for split in splits.values() for clip in split if clip.id == clip_id]
        if not clips:
            raise ConfigError(f"{data}: no held-out clip has the id {clip_id!r}")
    clip = clips[0]
    rows = {"real": clip.audio, "Griffin-Lim": griffin_lim(clip.mel, spec)}
    pitched = set()
    for path, model in zip(models, loaded, strict=True):
        speakers = list(model.config.speakers)
        speaker = clip.speaker if speakers == list(loaded[0].config.speakers) else None
        sequential = model.kind == "teacher"
        title = f"{model.kind} ({Path(path).name})"
        pitch_inputs = {}
        if getattr(model.config, "excitation", None) is not None:
            if clip.f0 is None:
                raise ConfigError(f"{path} is pitch-aware: clip {clip.id} has no F0")
            phase = torch.tensor([clip.phase], dtype=torch.float64)
            pitch_inputs = {"f0s": [torch.from_numpy(clip.f0).float()], "phases": phase}
            pitched.add(title)
        (audio,) = vocode(
            model,
            [clip.mel.to(device)],
            [speaker],
            max_seconds if sequential else float("inf"),
            frames_per_chunk=2 if sequential else 64,
            one_thread=sequential,
            **pitch_inputs,
        )
        rows[title] = audio
    length = min(len(audio) for audio in rows.values())
    contours = {}
    if clip.f0 is not None:
        times = (np.arange(len(clip.f0)) * spec.hop_length + frame_centre(spec)) / spec.sample_rate
        contour = (times, np.asarray(clip.f0, dtype=np.float64))
        contours = {title: contour for title in ("real", *sorted(pitched))}
    rows = {title: audio[:length] for title, audio in rows.items()}
    return ClipRows(clip.id, spec.sample_rate, rows, contours)


def render(
    rows: dict[str, np.ndarray],
    sample_rate: int,
    title: str,
    out: str | Path,
    contours: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """Draw the rows as stacked log spectrograms into a PNG, each contour of `contours`
    (times in seconds, F0 in Hz, 0 = unvoiced; by row title) over its row in the voiced
    frames; returns each row's periodicity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = {name: periodicity(audio, sample_rate) for name, audio in rows.items()}
    window = torch.hann_window(N_FFT)
    figure, axes = plt.subplots(len(rows), 1, figsize=(10, 2.2 * len(rows)), sharex=True)
    for axis, (name, audio) in zip(np.atleast_1d(axes), rows.items(), strict=True):
        stft = torch.stft(
            torch.from_numpy(np.asarray(audio, dtype=np.float32)),
            N_FFT,
            HOP,
            window=window,
            pad_mode="constant",  # reflection needs more samples than a short row may have
            return_complex=True,
        )
        decibels = 20 * torch.log10(stft.abs().clamp_min(1e-5)).numpy()
        seconds = len(audio) / sample_rate
        axis.imshow(
            decibels,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=decibels.max() - 80,
            vmax=decibels.max(),
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        score = "n/a" if scores[name] is None else f"{scores[name]:.2f}"
        label = f"{name}: periodicity {score}"
        if name in (contours or {}):
            times, f0 = contours[name]
            voiced_khz = np.where(f0 > 0, f0 / 1000, np.nan)  # NaN breaks the line where unvoiced
            axis.plot(times, voiced_khz, color="cyan", linewidth=1.5)
            axis.set_xlim(0, seconds)
            label += "; cyan: tracker F0"
        axis.set_title(label, fontsize=10, loc="left")
        axis.set_ylabel("kHz")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(out, image.getvalue())
    return scores


def run(args: argparse.Namespace, device: torch.device) -> dict:
    """Entry point of `wavenet spectrogram`; prints each row's periodicity as JSON."""
    made = spectrogram_rows(args.model, args.data, args.clip, args.max_seconds, device)
    seconds = len(next(iter(made.rows.values()))) / made.sample_rate
    title = f"held-out clip {made.clip_id}, first {seconds:.2f} s, copy synthesis from its mel"
    scores = render(made.rows, made.sample_rate, title, args.out, made.contours)
    report = {
        "clip": made.clip_id,
        "seconds": seconds,
        "periodicity": scores,
        "f0_contour": [name for name in made.rows if name in made.contours],
        "image": args.out,
    }
    print(json.dumps(report, indent=2))
    return report
