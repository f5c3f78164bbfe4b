"""Evaluation (`wavenet evaluate`): held-out NLL, and copy synthesis against a Griffin-Lim row.

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import metrics
from training.config import ConfigError
from training.dataset import crop, load_prepared
from training.dataset_format import DatasetError
from training.evaluate_pitch import evaluate_pitch, pitch_table
from training.sampling import vocode
from wavenet import mulaw
from wavenet.audio import AUDIO_SUFFIXES, load_audio
from wavenet.checkpoint import atomic_write_bytes, load_model, read_config
from wavenet.features import FeatureSpec

__all__ = [
    "Clip",
    "evaluate",
    "griffin_lim",
    "load_clips",
    "markdown_table",
    "score",
    "teacher_nll",
]

GRIFFIN_LIM_ITERATIONS = 32
KL_FRAMES = 64  # about 1 s at hop 256: the student's and teacher's context many times over
COLUMNS = (
    ("nll_bits_per_sample", "NLL (bits/sample)"),
    ("kl_nats_per_sample", "KL to teacher (nats/sample)"),
    ("log_mel_l1", "log-mel L1"),
    ("mrstft", "MR-STFT"),
    ("pesq_wb", "PESQ-WB"),
    ("stoi", "STOI"),
)


@dataclass
class Clip:
    """A held-out utterance: waveform (frames * hop,), log-mel (n_mels, frames), speaker id."""

    id: str
    audio: np.ndarray
    mel: torch.Tensor
    speaker: int | None


def load_clips(data: Path, spec: FeatureSpec, speakers: list[str]) -> tuple[list[Clip], str]:
    """Held-out clips of a prepared corpus, or every audio file of a folder.

    Speakers are matched to the model's by name; unknown ones get no speaker (None).

    Returns:
        tuple: The clips, and where they came from ("val", "train", or "folder").
    """
    if (data / "manifest.jsonl").is_file():
        corpus = load_prepared(data)
        if corpus.spec != spec:
            raise DatasetError(f"{data}: its feature spec differs from the model's")
        split = "val" if corpus.val else "train"
        clips = []
        for utterance in corpus.val or corpus.train:
            audio, mel = crop(utterance, 0, utterance.frames, spec)
            name = corpus.speakers[utterance.speaker_id]
            speaker = speakers.index(name) if name in speakers else None
            clips.append(Clip(utterance.entry.id, audio, torch.from_numpy(mel), speaker))
        return clips, split
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DatasetError(f"{data}: neither a prepared corpus nor a folder of audio files")
    clips = []
    for path in files:
        audio = load_audio(path, spec.sample_rate)
        audio = F.pad(audio, (0, spec.samples_for(spec.frames_for(len(audio))) - len(audio)))
        clips.append(Clip(path.stem, audio.numpy(), spec.extract(audio), None))
    return clips, "folder"


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


def griffin_lim(mel: torch.Tensor, spec: FeatureSpec, seed: int = 0) -> np.ndarray:
    """Waveform (frames * hop,) from a log-mel (n_mels, frames) by Griffin-Lim, 32 iterations.

    The mel is inverted to a linear magnitude with the spec's own filterbank (librosa's
    non-negative least squares), then phases are estimated. librosa centres frame i on
    sample i * hop; `FeatureSpec.extract` centres it on i * hop + hop / 2, so the result is
    delayed by hop / 2 to line up with the real audio.
    """
    import librosa

    stft = librosa.feature.inverse.mel_to_stft(
        np.exp(mel.double().numpy()),
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        power=spec.power,
        fmin=spec.f_min,
        fmax=spec.f_max,
        htk=spec.mel_scale == "htk",
        norm=spec.mel_norm,
    )
    length = spec.samples_for(mel.shape[-1])
    with warnings.catch_warnings():
        # A clip cut short by the time budget can be shorter than one FFT; librosa warns,
        # and still returns the right number of samples.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        audio = librosa.griffinlim(
            stft,
            n_iter=GRIFFIN_LIM_ITERATIONS,
            hop_length=spec.hop_length,
            win_length=spec.win_length,
            n_fft=spec.n_fft,
            random_state=seed,
        )
    delayed = np.concatenate([np.zeros(spec.hop_length // 2), audio, np.zeros(length)])
    return delayed[:length].astype(np.float32)


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
    """Score a model and write the report as JSON to `out`; a pitch predictor gets the
    report of `training.evaluate_pitch` instead.

    Args:
        teacher (str | Path | None): For a student, its teacher's checkpoint: adds the
            student's KL to the teacher on the held-out clips.

    Returns:
        dict: The report: nll_bits_per_sample (teachers only), kl_to_teacher (students given
        a teacher: kl, cross_entropy, entropy in nats per sample), rows (copy synthesis and
        Griffin-Lim, each with log_mel_l1, mrstft, pesq_wb, stoi), clips, notes.
    """
    if read_config(model_dir)["kind"] == "pitch":
        return evaluate_pitch(model_dir, data, out, device)
    started = time.monotonic()
    model = load_model(model_dir, device=torch.device(device))
    spec = model.spec
    pool, split = load_clips(Path(data), spec, list(getattr(model.config, "speakers", [])))
    notes = ["the corpus has no held-out split: scored on train utterances"] * (split == "train")
    nll = teacher_nll(model, pool, torch.device(device)) if model.kind == "teacher" else None
    kl = student_kl(model, teacher, pool, torch.device(device)) if teacher else None
    chosen = pool[: max(clips, 1)]
    # The teacher makes one sample per step, so small chunks keep close to the budget; the
    # student recomputes a receptive field of context per chunk, so it wants large ones.
    chunk = 2 if model.kind == "teacher" else 64
    mels, speakers = [clip.mel for clip in chosen], [clip.speaker for clip in chosen]
    sequential = model.kind == "teacher"
    made = vocode(model, mels, speakers, max_seconds, frames_per_chunk=chunk, one_thread=sequential)
    scores = score_clips(chosen, made, spec)
    report = {
        "model": str(model_dir),
        "kind": model.kind,
        "data": str(data),
        "split": split,
        "sample_rate": spec.sample_rate,
        "nll_bits_per_sample": nll,
        "nll_utterances": len(pool) if nll is not None else 0,
        "kl_to_teacher": kl,
        "rows": [
            {
                **_mean_row(f"{model.kind} copy synthesis", scores["model"]),
                "nll_bits_per_sample": nll,
                "kl_nats_per_sample": None if kl is None else kl["kl"],
            },
            _mean_row(f"Griffin-Lim ({GRIFFIN_LIM_ITERATIONS} it.)", scores["griffin_lim"]),
        ],
        "clips": scores["clips"],
        "notes": notes + scores["notes"],
        "max_seconds": max_seconds,
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_bytes(Path(out), (json.dumps(report, indent=2) + "\n").encode())
    return report


def markdown_table(report: dict) -> str:
    """The report's rows as a markdown table, with its notes below.

    The KL column appears only in reports that scored a student against its teacher.
    """
    if report["kind"] == "pitch":
        return pitch_table(report)
    scored_kl = report.get("kl_to_teacher") is not None
    columns = [c for c in COLUMNS if scored_kl or c[0] != "kl_nats_per_sample"]
    lines = [
        "| system | " + " | ".join(title for _, title in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row in report["rows"]:
        cells = ["n/a" if row.get(key) is None else f"{row[key]:.3f}" for key, _ in columns]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + " |")
    seconds = sum(clip["seconds"] for clip in report["clips"])
    lines.append("")
    lines.append(f"{len(report['clips'])} clip(s), {seconds:.2f} s of audio synthesised.")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)
