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
teacher on the first `KL_FRAMES` frames of every held-out clip (nats per sample: the exact
KL of distillation, the teacher run on the student's own sample).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training import metrics
from training.config import ConfigError
from training.eval_clips import Clip, load_clips, load_splits
from training.evaluate_pitch import evaluate_pitch, pitch_table
from training.griffin_lim import GRIFFIN_LIM_ITERATIONS, griffin_lim
from training.sampling import vocode
from training.splits import SPLIT_DESCRIPTIONS
from wavenet import mulaw
from wavenet.checkpoint import atomic_write_bytes, load_model, read_config
from wavenet.features import FeatureSpec

__all__ = [
    "Clip",
    "evaluate",
    "griffin_lim",
    "load_clips",
    "load_splits",
    "markdown_table",
    "score",
    "teacher_nll",
]

KL_FRAMES = 64  # about 1 s at hop 256: the student's and teacher's context many times over
COLUMNS = (
    ("nll_bits_per_sample", "NLL (bits/sample)"),
    ("kl_nats_per_sample", "KL to teacher (nats/sample)"),
    ("log_mel_l1", "log-mel L1"),
    ("mrstft", "MR-STFT"),
    ("pesq_wb", "PESQ-WB"),
    ("stoi", "STOI"),
)


@torch.no_grad()
def teacher_nll(
    model: nn.Module, clips: list[Clip], device: torch.device, chunk_frames: int = 128
) -> float:
    """Held-out NLL in bits per sample over whole clips (teacher forced, quantised input).

    Clips are scored `chunk_frames` frames at a time, to bound memory on long utterances.
    Each chunk runs with the frames before it that the receptive field and the mel encoder
    reach, and the frames after it that the encoder reaches, so every prediction equals the
    one a single pass over the whole clip would make.
    """
    hop = model.spec.hop_length
    reach = model.conditioning_context
    before = math.ceil((model.receptive_field + 1) / hop) + reach
    bits, samples = 0.0, 0
    for clip in clips:
        frames = clip.mel.shape[-1]
        speaker = None if clip.speaker is None else torch.tensor([clip.speaker], device=device)
        for start in range(0, frames, chunk_frames):
            stop = min(start + chunk_frames, frames)
            first, last = max(start - before, 0), min(stop + reach, frames)
            audio = torch.from_numpy(clip.audio[first * hop : last * hop]).view(1, -1).to(device)
            classes = mulaw.encode(audio)
            logits = model(mulaw.decode(classes), clip.mel[None, :, first:last].to(device), speaker)
            scored = slice((start - first) * hop, (stop - first) * hop)
            count = scored.stop - scored.start
            bits += float(metrics.nll_bits(logits[..., scored], classes[:, scored])) * count
            samples += count
    return bits / max(samples, 1)


def student_kl(
    model: nn.Module, teacher_dir: str | Path, clips: list[Clip], device: torch.device
) -> dict[str, float]:
    """The student's KL (and its cross-entropy and entropy) to its teacher, over held-out clips.

    Raises:
        ConfigError: if `model` is not a student, or the teacher's FeatureSpec or speakers
            differ from the student's.
    """
    from training.distill_losses import held_out_kl

    if model.kind != "student":
        raise ConfigError(f"--teacher scores a student's KL; the model is a {model.kind}")
    teacher = load_model(teacher_dir, device=device)
    if teacher.kind != "teacher" or teacher.spec != model.spec:
        raise ConfigError(f"{teacher_dir}: not a teacher with the student's FeatureSpec")
    if list(teacher.config.speakers) != list(model.config.speakers):
        raise ConfigError(f"{teacher_dir}: the teacher's speakers differ from the student's")
    items = [
        {
            "mel": clip.mel[None, :, :KL_FRAMES],
            "speaker": None if clip.speaker is None else torch.tensor([clip.speaker]),
        }
        for clip in clips
    ]
    return held_out_kl(model, teacher, items, device)


def score(reference: np.ndarray, estimate: np.ndarray, spec: FeatureSpec) -> tuple[dict, list]:
    """All audio metrics of one clip, and notes on any that did not apply."""
    rate = spec.sample_rate
    pesq, pesq_note = metrics.pesq_wideband(reference, estimate, rate)
    stoi, stoi_note = metrics.stoi_score(reference, estimate, rate)
    values = {
        "log_mel_l1": metrics.log_mel_l1(reference, estimate, spec),
        "mrstft": metrics.multi_resolution_stft_distance(reference, estimate, rate),
        "pesq_wb": pesq,
        "stoi": stoi,
    }
    return values, [note for note in (pesq_note, stoi_note) if note]


def _mean_row(system: str, scores: list[dict]) -> dict:
    """Average each metric over the clips where it applied (None where it never did)."""
    row: dict = {"system": system}
    for name in ("log_mel_l1", "mrstft", "pesq_wb", "stoi"):
        values = [s[name] for s in scores if s[name] is not None]
        row[name] = float(np.mean(values)) if values else None
    return row


def score_clips(clips: list[Clip], made: list[np.ndarray], spec: FeatureSpec) -> dict:
    """Score synthesised audio and Griffin-Lim from the same frames against the real clips.

    Returns:
        dict: "model" and "griffin_lim" (per-clip metric dicts), "clips" (id, seconds made,
        complete) and "notes" (why a metric is missing, with the clips it concerns).
    """
    scores: dict[str, list] = {"model": [], "griffin_lim": [], "clips": []}
    missing: dict[str, list[str]] = {}
    for clip, audio in zip(clips, made, strict=True):
        reference = clip.audio[: len(audio)]
        frames = math.ceil(len(audio) / spec.hop_length)
        baseline = griffin_lim(clip.mel[:, :frames], spec)[: len(audio)]
        values, notes = score(reference, audio, spec)
        scores["model"].append(values)
        scores["griffin_lim"].append(score(reference, baseline, spec)[0])
        for note in notes:
            missing.setdefault(note, []).append(clip.id)
        complete = len(audio) == spec.samples_for(clip.mel.shape[-1])
        seconds = len(audio) / spec.sample_rate
        scores["clips"].append({"id": clip.id, "seconds": seconds, "complete": complete})
    scores["notes"] = [f"{note} ({', '.join(ids)})" for note, ids in missing.items()]
    return scores


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    max_seconds: float = 120.0,
    clips: int = 3,
    device: torch.device | str = "cpu",
    teacher: str | Path | None = None,
) -> dict:
    """Score a model on each held-out split and write the report as JSON to `out`; a pitch
    predictor gets the report of `training.evaluate_pitch` instead.

    Args:
        max_seconds (float): Synthesis time budget, shared equally between the splits.
        clips (int): Clips synthesised per split.
        teacher (str | Path | None): For a student, its teacher's checkpoint: adds the
            student's KL to the teacher on the held-out clips.

    Returns:
        dict: The report: splits (per split: description, utterances, speakers,
        nll_bits_per_sample, nll_utterances, kl_to_teacher), rows (per split, copy synthesis
        and Griffin-Lim, each with split, system, log_mel_l1, mrstft, pesq_wb, stoi and the
        split's NLL and KL), clips (with their split), notes. split, nll_bits_per_sample,
        nll_utterances and kl_to_teacher repeat the first split's (the training speakers').
    """
    if read_config(model_dir)["kind"] == "pitch":
        return evaluate_pitch(model_dir, data, out, device)
    started = time.monotonic()
    device = torch.device(device)
    model = load_model(model_dir, device=device)
    speakers = list(getattr(model.config, "speakers", []))
    splits = load_splits(Path(data), model.spec, speakers)
    budget = max_seconds / len(splits)
    scored = {
        name: score_split(model, name, pool, device, budget, clips, teacher)
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


SPLIT_KEYS = ("utterances", "speakers", "nll_bits_per_sample", "nll_utterances", "kl_to_teacher")


def score_split(
    model: nn.Module,
    split: str,
    pool: list[Clip],
    device: torch.device,
    max_seconds: float,
    clips: int,
    teacher: str | Path | None,
) -> dict:
    """NLL (teachers), KL to `teacher` (students given one) and copy synthesis of one split.

    Returns:
        dict: utterances, speakers (their names, where known), nll_bits_per_sample,
        nll_utterances, kl_to_teacher, rows and clips (each naming `split`), notes.
    """
    nll = teacher_nll(model, pool, device) if model.kind == "teacher" else None
    kl = student_kl(model, teacher, pool, device) if teacher else None
    chosen = pool[: max(clips, 1)]
    # The teacher makes one sample per step, so small chunks keep close to the budget; the
    # student recomputes a receptive field of context per chunk, so it wants large ones.
    chunk = 2 if model.kind == "teacher" else 64
    mels, speakers = [clip.mel for clip in chosen], [clip.speaker for clip in chosen]
    sequential = model.kind == "teacher"
    made = vocode(model, mels, speakers, max_seconds, frames_per_chunk=chunk, one_thread=sequential)
    scores = score_clips(chosen, made, model.spec)
    return {
        "utterances": len(pool),
        "speakers": sorted({clip.speaker_name for clip in pool if clip.speaker_name}),
        "nll_bits_per_sample": nll,
        "nll_utterances": len(pool) if nll is not None else 0,
        "kl_to_teacher": kl,
        "rows": [
            {
                "split": split,
                **_mean_row(f"{model.kind} copy synthesis", scores["model"]),
                "nll_bits_per_sample": nll,
                "kl_nats_per_sample": None if kl is None else kl["kl"],
            },
            {
                "split": split,
                **_mean_row(f"Griffin-Lim ({GRIFFIN_LIM_ITERATIONS} it.)", scores["griffin_lim"]),
            },
        ],
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
    """
    if report["kind"] == "pitch":
        return pitch_table(report)
    scored_kl = report.get("kl_to_teacher") is not None
    columns = [c for c in COLUMNS if scored_kl or c[0] != "kl_nats_per_sample"]
    lines = [
        "| split | system | " + " | ".join(title for _, title in columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for row in report["rows"]:
        cells = ["n/a" if row.get(key) is None else f"{row[key]:.3f}" for key, _ in columns]
        split = row.get("split", report["split"])
        lines.append(f"| {split} | {row['system']} | " + " | ".join(cells) + " |")
    seconds = sum(clip["seconds"] for clip in report["clips"])
    lines.append("")
    for name, split in report.get("splits", {}).items():
        speakers = ", ".join(split["speakers"]) or "unknown"
        lines.append(
            f"- {name}: {split['description']}; {split['utterances']} utterance(s) of {speakers}"
        )
    lines.append(f"{len(report['clips'])} clip(s), {seconds:.2f} s of audio synthesised.")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)
