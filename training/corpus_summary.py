"""What a corpus build produces: one `Clip` per written file and one skip per input left out.

Every source of `wavenet corpus` (recorded prompts, synthetic voices) returns the same two
things, so the manifest and the report are written in one place from one list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from training.config import ConfigError

__all__ = ["Clip", "CorpusError", "CorpusSummary"]


class CorpusError(ConfigError):
    """A corpus cannot be built as asked (unknown voice or source, no sentences, no audio)."""


class Clip(NamedTuple):
    """One written utterance: a row of manifest.csv.

    Attributes:
        path: The wav file, relative to the corpus folder (posix), `<speaker>/<utt_id>.wav`.
        speaker: Speaker name (the folder it lies in).
        text: What is said, or "" when the source has no transcript.
        seconds: Its length at the corpus's sample rate.
        source: The corpus source it came from (`asterisk`, `klettres`, `synthetic`, ...).
        language: ISO 639-1 code of what is said (`en`, `cs`, ...).
        licence: The licence of the audio, as its Debian copyright file states it.
    """

    path: str
    speaker: str
    text: str
    seconds: float
    source: str = "synthetic"
    language: str = "en"
    licence: str = ""


@dataclass
class CorpusSummary:
    """What a corpus build produced.

    Attributes:
        rows: One `Clip` per written utterance.
        failures: Synthetic voice name -> why it was left out.
        skipped: {source, input, reason} for every other input left out (a file, a folder, a
            whole source).
    """

    rows: list[Clip] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(row[3] for row in self.rows)

    def skip(self, source: str, item: str, reason: str) -> None:
        self.skipped.append({"source": source, "input": item, "reason": reason})

    def merge(self, other: CorpusSummary) -> None:
        self.rows.extend(other.rows)
        self.failures.update(other.failures)
        self.skipped.extend(other.skipped)
