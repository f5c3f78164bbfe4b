"""Evaluation of a pitch predictor (`wavenet evaluate` given a model of kind "pitch").

The predictor reads each held-out utterance's log-mel and its F0 is scored against the F0
the pitch tracker cached for that utterance: voicing error, gross pitch error and the median
error in cents (`training.pitch_metrics`), over all frames of each held-out split at once:
"val" (held-out utterances of the speakers seen in training) and "unseen" (a speaker kept
out of training altogether). For a folder of audio files, the reference is the tracker run
on each file with the model's own PitchSpec.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from training.config import ConfigError
from training.dataset import Utterance, load_prepared
from training.dataset_format import DatasetError
from training.pitch_metrics import pitch_scores
from wavenet.audio import AUDIO_SUFFIXES, load_audio
from wavenet.checkpoint import atomic_write_bytes, load_model
from wavenet.features import FeatureSpec
from wavenet.pitch import check_pitch_spec, track_f0
from wavenet.pitch_model import PitchPredictor

__all__ = ["SPLIT_NAMES", "evaluate_pitch", "pitch_table", "score_split"]

SPLIT_NAMES = {
    "val": "held-out utterances of seen speakers",
    "unseen": "a speaker unseen in training",
    "train": "training utterances (the corpus has no held-out split)",
    "folder": "audio files, reference F0 tracked here",
}


@torch.no_grad()
def score_split(
    model: PitchPredictor, tracks: list[tuple[torch.Tensor, np.ndarray]], device: torch.device
) -> dict:
    """Pitch scores of the model over every frame of a list of (mel (n_mels, F), f0 (F,))."""
    references, estimates = [], []
    for mel, f0 in tracks:
        estimates.append(model.predict_f0(mel[None].to(device))[0].cpu().numpy())
        references.append(np.asarray(f0, dtype=np.float64))
    return pitch_scores(np.concatenate(references), np.concatenate(estimates))


def _prepared_splits(data: Path, model: PitchPredictor) -> dict[str, tuple[list, list[str]]]:
    """(mel, f0) pairs and speaker names of each held-out split of a prepared corpus."""
    corpus = load_prepared(data)
    if corpus.spec != model.spec:
        raise DatasetError(f"{data}: its feature spec differs from the model's")
    check_pitch_spec(model.config.pitch, corpus.pitch, "the pitch model", str(data))
    pools = {"val": corpus.val, "unseen": corpus.unseen}
    if not corpus.val and not corpus.unseen:
        pools = {"train": corpus.train}
    splits = {}
    for split, utterances in pools.items():
        if utterances:
            tracks = [(_mel(u, corpus.spec), u.load_f0()) for u in utterances]
            splits[split] = (tracks, sorted({u.speaker for u in utterances}))
    return splits


def _mel(utterance: Utterance, spec: FeatureSpec) -> torch.Tensor:
    return torch.from_numpy(np.array(utterance.load(spec)[1]))


def _folder_split(data: Path, model: PitchPredictor) -> dict[str, tuple[list, list[str]]]:
    """(mel, f0) of every audio file of a folder, F0 from the tracker with the model's spec."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DatasetError(f"{data}: neither a prepared corpus nor a folder of audio files")
    tracks = []
    for path in files:
        audio = load_audio(path, model.spec.sample_rate)
        f0 = track_f0(audio.numpy(), model.spec, model.config.pitch)
        tracks.append((model.spec.extract(audio), f0))
    return {"folder": (tracks, [])}


def evaluate_pitch(
    model_dir: str | Path, data: str | Path, out: str | Path, device: torch.device | str = "cpu"
) -> dict:
    """Score a pitch predictor on each held-out split and write the report as JSON to `out`.

    Returns:
        dict: model, kind ("pitch"), data, pitch (the PitchSpec), splits (one row per split:
        split, description, utterances, speakers, voicing_error, gross_pitch_error,
        median_cents, frames, voiced_frames), notes, elapsed_seconds.

    Raises:
        ConfigError: if the model is not a pitch predictor, or its PitchSpec differs from
            the corpus's.
        DatasetError: for data that is neither a prepared corpus with F0 nor audio files.
    """
    started = time.monotonic()
    device = torch.device(device)
    model = load_model(model_dir, device=device)
    if model.kind != "pitch":
        raise ConfigError(f"{model_dir}: a {model.kind}, not a pitch predictor")
    data = Path(data)
    prepared = (data / "manifest.jsonl").is_file()
    splits = _prepared_splits(data, model) if prepared else _folder_split(data, model)
    rows = []
    for split, (tracks, speakers) in splits.items():
        row = {"split": split, "description": SPLIT_NAMES[split], "utterances": len(tracks)}
        rows.append({**row, "speakers": speakers, **score_split(model, tracks, device)})
    notes = []
    if prepared and "unseen" not in splits:
        notes.append("the corpus has no unseen-speaker split: only seen speakers were scored")
    report = {
        "model": str(model_dir),
        "kind": "pitch",
        "data": str(data),
        "pitch": model.config.pitch.model_dump(mode="json"),
        "splits": rows,
        "notes": notes,
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_bytes(Path(out), (json.dumps(report, indent=2) + "\n").encode())
    return report


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def pitch_table(report: dict) -> str:
    """The report's splits as a markdown table, with its notes below."""
    lines = [
        "| split | speakers | utterances | voiced frames | voicing error | gross pitch error "
        "| median error (cents) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["splits"]:
        speakers = (
            ", ".join(row["speakers"])
            if len(row["speakers"]) <= 3
            else (f"{len(row['speakers'])} speakers")
        )
        cents = "n/a" if row["median_cents"] is None else f"{row['median_cents']:.1f}"
        lines.append(
            f"| {row['split']} ({row['description']}) | {speakers or '-'} | {row['utterances']} "
            f"| {row['voiced_frames']} / {row['frames']} | {_percent(row['voicing_error'])} "
            f"| {_percent(row['gross_pitch_error'])} | {cents} |"
        )
    lines.append("")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines).rstrip()
