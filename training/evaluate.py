"""Evaluation (`wavenet evaluate`): held-out NLL, and copy synthesis against a Griffin-Lim row.

Each held-out split (`training.eval_clips`: the training speakers' held-out utterances,
"val", and the speakers kept out of training, "unseen") is scored on its own, and every row
and clip of the report names its split; the synthesis time budget is shared equally
between the splits.

Copy synthesis vocodes the real mels of a few held-out clips and scores the audio against
the real waveform. Teacher sampling takes one network step per sample, so all clips are
sampled together in one zero-padded batch, and sampling stops when `max_seconds` is spent;
each clip is then scored over the part that was made. A student makes each clip in one
parallel pass. Griffin-Lim (32 iterations) inverts the same mel frames, so every report
carries its own baseline. A student given its teacher is also scored by its KL to the
teacher (`training.eval_likelihood`).

A pitch-aware model makes each clip from the corpus's tracker F0, and with a pitch predictor
(`--pitch`) once more from the F0 predicted from the mel; a student with a harmonic source is
shown beside its untrained start (`training.copy_synthesis` names the rows). Every synthesis
row is also scored by its periodicity in the tracker's voiced frames and its noise floor in
the recording's silent frames (`training.metrics`); each split gives the real recordings'
periodicity beside them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from training.copy_synthesis import check_predictor, f0_routes, score, score_systems, synthesise
from training.eval_clips import Clip, load_clips, load_splits
from training.eval_likelihood import student_kl, teacher_nll
from training.evaluate_pitch import evaluate_pitch, pitch_table
from training.griffin_lim import griffin_lim
from training.splits import SPLIT_DESCRIPTIONS
from wavenet.checkpoint import atomic_write_bytes, load_model, read_config

__all__ = [
    "Clip",
    "evaluate",
    "griffin_lim",
    "load_clips",
    "load_splits",
    "markdown_table",
    "score",
    "score_split",
    "student_kl",
    "teacher_nll",
]

COLUMNS = (  # (row key, title, format) of the markdown table
    ("nll_bits_per_sample", "NLL (bits/sample)", ".3f"),
    ("kl_nats_per_sample", "KL to teacher (nats/sample)", ".3f"),
    ("log_mel_l1", "log-mel L1", ".3f"),
    ("mrstft", "MR-STFT", ".3f"),
    ("pesq_wb", "PESQ-WB", ".3f"),
    ("stoi", "STOI", ".3f"),
    ("periodicity_voiced", "periodicity (voiced)", ".3f"),
    ("noise_floor_db", "noise floor (dB)", "+.1f"),
)


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    max_seconds: float = 120.0,
    clips: int = 3,
    device: torch.device | str = "cpu",
    teacher: str | Path | None = None,
    pitch: str | Path | None = None,
) -> dict:
    """Score a model on each held-out split and write the report as JSON to `out`; a pitch
    predictor gets the report of `training.evaluate_pitch` instead.

    Args:
        max_seconds (float): Synthesis time budget, shared equally between the splits (and
            within a split between its synthesis rows).
        clips (int): Clips synthesised per split.
        teacher (str | Path | None): For a student, its teacher's checkpoint: adds the
            student's KL to the teacher on the held-out clips.
        pitch (str | Path | None): For a pitch-aware model, a pitch predictor's checkpoint:
            adds rows made from the F0 it predicts from each mel.

    Returns:
        dict: The report: splits (per split: description, utterances, speakers,
        nll_bits_per_sample, nll_utterances, kl_to_teacher, real_periodicity_voiced), rows
        (per split, each synthesis system of `training.copy_synthesis` then Griffin-Lim, each
        with split, system, route (tracker, predictor or None), log_mel_l1, mrstft, pesq_wb,
        stoi, periodicity_voiced, noise_floor_db, and on the first row the split's NLL and
        KL), clips (with their split), notes. split, nll_bits_per_sample, nll_utterances and
        kl_to_teacher repeat the first split's (the training speakers').

    Raises:
        ConfigError: for `pitch` with a mel-only model or a checkpoint that is not a pitch
            predictor for the model's features.
        PitchSpecError: if the corpus's F0 or the predictor's was tracked otherwise than the
            model records (config.pitch).
    """
    if read_config(model_dir)["kind"] == "pitch":
        return evaluate_pitch(model_dir, data, out, device)
    started = time.monotonic()
    device = torch.device(device)
    model = load_model(model_dir, device=device)
    predictor = None
    if pitch is not None:
        predictor = load_model(pitch, device=device)
        check_predictor(model, predictor, str(pitch))
    speakers = list(getattr(model.config, "speakers", []))
    model_pitch = model.config.pitch if model.config.excitation is not None else None
    splits = load_splits(Path(data), model.spec, speakers, model_pitch)
    budget = max_seconds / len(splits)
    scored = {
        name: score_split(model, name, pool, device, budget, clips, teacher, predictor)
        for name, pool in splits.items()
    }
    first = next(iter(scored.values()))
    report = {
        "model": str(model_dir),
        "kind": model.kind,
        "data": str(data),
        "split": next(iter(scored)),
        "splits": {
            name: {
                "description": SPLIT_DESCRIPTIONS[name],
                **{key: result[key] for key in SPLIT_KEYS},
            }
            for name, result in scored.items()
        },
        "sample_rate": model.spec.sample_rate,
        **{key: first[key] for key in ("nll_bits_per_sample", "nll_utterances", "kl_to_teacher")},
        "rows": [row for result in scored.values() for row in result["rows"]],
        "clips": [clip for result in scored.values() for clip in result["clips"]],
        "notes": _notes(splits) + [note for result in scored.values() for note in result["notes"]],
        "max_seconds": max_seconds,
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_bytes(Path(out), (json.dumps(report, indent=2) + "\n").encode())
    return report


SPLIT_KEYS = (
    "utterances",
    "speakers",
    "nll_bits_per_sample",
    "nll_utterances",
    "kl_to_teacher",
    "real_periodicity_voiced",
)


def score_split(
    model: nn.Module,
    split: str,
    pool: list[Clip],
    device: torch.device,
    max_seconds: float,
    clips: int,
    teacher: str | Path | None,
    predictor: nn.Module | None = None,
) -> dict:
    """NLL (teachers), KL to `teacher` (students given one) and copy synthesis of one split.

    Returns:
        dict: utterances, speakers (their names, where known), nll_bits_per_sample,
        nll_utterances, kl_to_teacher, real_periodicity_voiced, rows and clips (each naming
        `split`), notes.
    """
    nll = teacher_nll(model, pool, device) if model.kind == "teacher" else None
    kl = student_kl(model, teacher, pool, device) if teacher else None
    chosen = pool[: max(clips, 1)]
    routes = f0_routes(model, chosen, predictor, device)
    systems = synthesise(model, chosen, routes, max_seconds)
    scores = score_systems(chosen, systems, model.spec)
    rows = [{"split": split, **row} for row in scores["rows"]]
    # NLL and KL are the model's own (tracker F0, where it has one): they go with its first row.
    rows[0].update(nll_bits_per_sample=nll, kl_nats_per_sample=None if kl is None else kl["kl"])
    return {
        "utterances": len(pool),
        "speakers": sorted({clip.speaker_name for clip in pool if clip.speaker_name}),
        "nll_bits_per_sample": nll,
        "nll_utterances": len(pool) if nll is not None else 0,
        "kl_to_teacher": kl,
        "real_periodicity_voiced": scores["real"]["periodicity_voiced"],
        "rows": rows,
        "clips": [{"split": split, **clip} for clip in scores["clips"]],
        "notes": [f"{split}: {note}" for note in scores["notes"]],
    }


def _notes(splits: dict[str, list[Clip]]) -> list[str]:
    """What the report could not score as asked."""
    notes = []
    if "train" in splits:
        notes.append("the corpus has no held-out split: scored on train utterances")
    if "folder" not in splits and "unseen" not in splits:
        notes.append("the corpus has no unseen speaker: only the training speakers were scored")
    return notes


def markdown_table(report: dict) -> str:
    """The report's rows as a markdown table, one row per split and system, then what each
    split holds and the notes.

    The KL column appears only in reports that scored a student against its teacher.
    periodicity (voiced): `training.metrics.voiced_periodicity`, the real recordings' own
    given with each split; noise floor: `training.metrics.noise_floor_db`.
    """
    if report["kind"] == "pitch":
        return pitch_table(report)
    scored_kl = report.get("kl_to_teacher") is not None
    columns = [c for c in COLUMNS if scored_kl or c[0] != "kl_nats_per_sample"]
    lines = [
        "| split | system | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for row in report["rows"]:
        cells = [
            "n/a" if row.get(key) is None else format(row[key], style) for key, _, style in columns
        ]
        split = row.get("split", report["split"])
        lines.append(f"| {split} | {row['system']} | " + " | ".join(cells) + " |")
    seconds = sum(clip["seconds"] for clip in report["clips"])
    lines.append("")
    for name, split in report.get("splits", {}).items():
        speakers = ", ".join(split["speakers"]) or "unknown"
        real = split.get("real_periodicity_voiced")
        real = "" if real is None else f"; the recordings' periodicity (voiced) {real:.3f}"
        lines.append(
            f"- {name}: {split['description']}; {split['utterances']} utterance(s) of {speakers}"
            + real
        )
    lines.append(f"{len(report['clips'])} clip(s), {seconds:.2f} s of audio synthesised.")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)
