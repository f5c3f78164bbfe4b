"""`wavenet spectrogram`: one held-out utterance as real audio, Griffin-Lim and each model.

Every model vocodes the clip's real mel (copy synthesis); Griffin-Lim inverts the same mel.
The rows are drawn as linear-frequency log spectrograms (64 ms windows, so the harmonics of
any voice above 60 Hz are resolved) over a common length: a teacher samples one step at a
time within a time budget, so its row may be the clip's first part, and every row is cut to
the shortest. Each row's title carries its periodicity (`training.metrics.periodicity`),
the number that tells harmonics from a whisper.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch

from training.config import ConfigError
from training.evaluate import griffin_lim, load_clips
from training.metrics import periodicity
from training.sampling import vocode
from wavenet.checkpoint import atomic_write_bytes, load_model

__all__ = ["render", "run", "spectrogram_rows"]

N_FFT = 1024
HOP = 128


def spectrogram_rows(
    models: list[str | Path],
    data: str | Path,
    clip_id: str | None = None,
    max_seconds: float = 300.0,
    device: torch.device | str = "cpu",
) -> tuple[str, int, dict[str, np.ndarray]]:
    """Audio of one clip: real, Griffin-Lim, and each model's copy synthesis.

    Returns:
        tuple: The clip's id, the sample rate, and the waveforms by row title, all cut to
        the same length.

    Raises:
        ConfigError: if the models' FeatureSpecs differ, or no clip has the asked-for id.
    """
    device = torch.device(device)
    loaded = [load_model(path, device=device) for path in models]
    spec = loaded[0].spec
    for path, model in zip(models, loaded, strict=True):
        if model.spec != spec:
            raise ConfigError(f"{path}: its FeatureSpec differs from {models[0]}'s")
    clips, _ = load_clips(Path(data), spec, list(loaded[0].config.speakers))
    if clip_id is not None:
        clips = [clip for clip in clips if clip.id == clip_id]
        if not clips:
            raise ConfigError(f"{data}: no held-out clip has the id {clip_id!r}")
    clip = clips[0]
    rows = {"real": clip.audio, "Griffin-Lim": griffin_lim(clip.mel, spec)}
    for path, model in zip(models, loaded, strict=True):
        speakers = list(model.config.speakers)
        speaker = clip.speaker if speakers == list(loaded[0].config.speakers) else None
        sequential = model.kind == "teacher"
        (audio,) = vocode(
            model,
            [clip.mel.to(device)],
            [speaker],
            max_seconds if sequential else float("inf"),
            frames_per_chunk=2 if sequential else 64,
            one_thread=sequential,
        )
        rows[f"{model.kind} ({Path(path).name})"] = audio
    length = min(len(audio) for audio in rows.values())
    return clip.id, spec.sample_rate, {title: audio[:length] for title, audio in rows.items()}


def render(rows: dict[str, np.ndarray], sample_rate: int, title: str, out: str | Path) -> dict:
    """Draw the rows as stacked log spectrograms into a PNG; returns each row's periodicity."""
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
        axis.set_title(f"{name}: periodicity {score}", fontsize=10, loc="left")
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
    clip_id, rate, rows = spectrogram_rows(
        args.model, args.data, args.clip, args.max_seconds, device
    )
    seconds = len(next(iter(rows.values()))) / rate
    title = f"held-out clip {clip_id}, first {seconds:.2f} s, copy synthesis from its mel"
    scores = render(rows, rate, title, args.out)
    report = {"clip": clip_id, "seconds": seconds, "periodicity": scores, "image": args.out}
    print(json.dumps(report, indent=2))
    return report
