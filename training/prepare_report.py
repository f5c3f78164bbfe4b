"""What a `wavenet prepare` run kept and dropped, and how each speaker's voice sounds in F0.

Per speaker, report.json gives minutes, the voiced share of frames and the 5th, 50th and
95th percentiles of F0 over voiced frames. They are the first check of the pitch labels: an
adult voice spans about 1.5 octaves, so p95 / p5 far above 3, or a p5 near f0_min, points at
octave errors of the tracker or at noise tracked as voice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["PrepareReport", "SpeakerStats", "print_report", "speaker_stats"]


class SpeakerStats(BaseModel):
    """One speaker's kept audio and its F0."""

    split: str = Field(description="train (with its val utterances) or unseen.")
    utterances: int = Field(description="Kept utterances.")
    minutes: float = Field(description="Kept audio, after trimming, before padding.")
    voiced_fraction: float | None = Field(description="Share of frames with F0 > 0.")
    f0_p5: float | None = Field(description="5th percentile of F0 over voiced frames, Hz.")
    f0_p50: float | None = Field(description="Median F0 over voiced frames, Hz.")
    f0_p95: float | None = Field(description="95th percentile of F0 over voiced frames, Hz.")


class PrepareReport(BaseModel):
    """What a prepare run kept and dropped; saved as report.json."""

    data: str = Field(description="The corpus folder read.")
    layout: str = Field(description="ljspeech, vctk or folder.")
    kept: int = Field(description="Utterances in the manifest.")
    dropped: int = Field(description="Files left out.")
    train: int = Field(description="Kept utterances in the training split.")
    val: int = Field(description="Held-out utterances of the training speakers.")
    unseen: int = Field(0, description="Utterances of the speakers kept out of training.")
    seconds: float = Field(description="Audio kept, after trimming, before padding.")
    speakers: list[str] = Field(description="Training speaker names; index = speaker id.")
    unseen_speakers: list[str] = Field(default_factory=list, description="Kept out of training.")
    unseen_not_found: list[str] = Field(
        default_factory=list, description="Named unseen speakers the corpus does not have."
    )
    speaker_stats: dict[str, SpeakerStats] = Field(
        default_factory=dict, description="Per speaker (training and unseen): audio and F0."
    )
    dropped_files: list[dict[str, str]] = Field(description="{source, reason} per dropped file.")


def speaker_stats(split: str, samples: Iterable[int], f0s: list[np.ndarray], rate: int):
    """The `SpeakerStats` of one speaker.

    Args:
        split (str): "train" or "unseen".
        samples (Iterable[int]): Each utterance's length before padding.
        f0s (list[ndarray]): Each utterance's F0 (frames,), 0 where unvoiced.
        rate (int): Sample rate.
    """
    samples = list(samples)
    f0 = np.concatenate(f0s) if f0s else np.zeros(0, np.float32)
    voiced = f0[f0 > 0].astype(np.float64)
    p5, p50, p95 = np.percentile(voiced, [5, 50, 95]) if voiced.size else (None,) * 3
    return SpeakerStats(
        split=split,
        utterances=len(samples),
        minutes=round(sum(samples) / rate / 60, 3),
        voiced_fraction=round(voiced.size / f0.size, 4) if f0.size else None,
        f0_p5=None if p5 is None else round(float(p5), 1),
        f0_p50=None if p50 is None else round(float(p50), 1),
        f0_p95=None if p95 is None else round(float(p95), 1),
    )


def print_report(report: PrepareReport, file=None) -> None:
    """A summary line, the unseen speakers, then one line per dropped file with its reason."""
    file = file or sys.stdout
    print(
        f"kept {report.kept} utterance(s) ({report.seconds / 60:.1f} min, "
        f"{len(report.speakers)} training speaker(s), train {report.train}, val {report.val}, "
        f"unseen {report.unseen}); dropped {report.dropped} file(s)",
        file=file,
    )
    print(f"  unseen speaker(s): {', '.join(report.unseen_speakers) or 'none'}", file=file)
    for name in report.unseen_not_found:
        print(f"  unseen speaker {name!r} is not in the corpus: ignored", file=file)
    for item in report.dropped_files:
        print(f"  dropped {item['source']}: {item['reason']}", file=file)
