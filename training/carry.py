"""Packing a prepared corpus's audio for a machine that cannot build it: a lent GPU machine.

That machine has no flite or festival to synthesise the corpus, and what travels with a call
is capped (64 MiB, the repository included), far under the prepared float32 features. So
the corpus's own clips travel as lossless FLAC, and `wavenet prepare` runs there with the
config that made PREPARED here: same samples and same settings give the same features.

When the whole corpus does not fit, a deterministic subset travels: every held-out utterance,
then training utterances dealt speaker by speaker in a seeded order, until the next clip
would pass the budget. A larger budget carries a superset. The held-out ids are written into
the prepare config (`val_ids`), since prepare's seeded draw depends on which utterances it
sees: the device's held-out set is this machine's, and none of it is trained on there.

    CARRY/<corpus folder name>/<speaker>/<utt_id>.flac (+ .txt)   the layout prepare reads
    CARRY/prepare.yaml     PREPARED's prepare config, with val_ids
    CARRY/carried.json     what travels: counts, minutes and bytes, of how many
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import soundfile
import yaml
from pydantic import BaseModel, Field

from training.config import ConfigError
from training.dataset_format import ManifestEntry, read_manifest, write_text_atomic
from training.layouts import find_sources

__all__ = ["CarryError", "CarrySummary", "carry_order", "flac_bytes", "pack_corpus"]

CARRIED_JSON = "carried.json"
PREPARE_YAML = "prepare.yaml"
# Integer PCM that FLAC stores exactly; soundfile reads each into int32 without loss.
LOSSLESS_SUBTYPES = {"PCM_U8": "PCM_S8", "PCM_S8": "PCM_S8", "PCM_16": "PCM_16", "PCM_24": "PCM_24"}


class CarryError(ConfigError):
    """The corpus cannot be packed as asked (layout, audio format, or a budget too small)."""


class CarrySummary(BaseModel):
    """What was packed; saved as CARRY/carried.json."""

    corpus: str = Field(description="Name of the corpus folder inside CARRY.")
    utterances: int = Field(description="Utterances carried.")
    of_utterances: int = Field(description="Utterances in PREPARED.")
    val: int = Field(description="Held-out utterances carried (all of PREPARED's).")
    minutes: float = Field(description="Prepared audio of the carried utterances.")
    of_minutes: float = Field(description="Prepared audio of all of PREPARED's.")
    flac_bytes: int = Field(description="Size of the FLAC files.")
    max_bytes: int = Field(description="The budget they had.")


def carry_order(entries: list[ManifestEntry], seed: int) -> list[ManifestEntry]:
    """Held-out entries (by id), then training entries dealt speaker by speaker.

    Each speaker's training utterances are shuffled with `seed`; the deal takes the first of
    every speaker, then the second, and so on, so any prefix covers the speakers evenly.
    """
    rng = random.Random(seed)
    val = sorted((e for e in entries if e.split == "val"), key=lambda e: e.id)
    queues: dict[str, list[ManifestEntry]] = {}
    for entry in sorted((e for e in entries if e.split == "train"), key=lambda e: e.id):
        queues.setdefault(entry.speaker, []).append(entry)
    for speaker in sorted(queues):
        rng.shuffle(queues[speaker])
    longest = max((len(queue) for queue in queues.values()), default=0)
    dealt = [
        queues[speaker][index]
        for index in range(longest)
        for speaker in sorted(queues)
        if index < len(queues[speaker])
    ]
    return val + dealt


def flac_bytes(path: Path) -> bytes:
    """The audio file at `path` as FLAC with the same integer samples.

    Raises:
        CarryError: if its samples are not integer PCM (float or lossy audio would change).
    """
    subtype = soundfile.info(path).subtype
    if subtype not in LOSSLESS_SUBTYPES:
        raise CarryError(f"{path}: {subtype} audio cannot travel as lossless FLAC")
    samples, rate = soundfile.read(path, dtype="int32")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="FLAC", subtype=LOSSLESS_SUBTYPES[subtype])
    return buffer.getvalue()


def pack_corpus(
    corpus: str | Path, prepared: str | Path, carry: str | Path, max_bytes: int, seed: int = 0
) -> CarrySummary:
    """Write the FLAC clips, prepare.yaml and carried.json of PREPARED's utterances to CARRY.

    Args:
        corpus (str | Path): The corpus folder PREPARED was made from (VCTK-like or folder).
        prepared (str | Path): The folder `wavenet prepare` wrote: its manifest gives the
            utterances, their split and their files; its prepare config is carried.
        carry (str | Path): The output folder; a previous pack there is replaced.
        max_bytes (int): Budget for the FLAC files.
        seed (int): Seeds the order in which training utterances are dealt.

    Raises:
        CarryError: for an LJSpeech layout (its metadata.csv would list clips left behind),
            audio that is not integer PCM, a folder in the way, or a budget that cannot hold
            the held-out utterances and one of every speaker.
    """
    corpus, prepared, carry = Path(corpus), Path(prepared), Path(carry)
    _, speakers, entries = read_manifest(prepared, check_files=False)
    if find_sources(corpus)[0] == "ljspeech":
        raise CarryError(f"{corpus}: only VCTK-like and plain-folder corpora can be packed")
    target = _claim(carry, corpus.resolve().name)
    total, chosen = 0, []
    for entry in carry_order(entries, seed):
        data = flac_bytes(corpus / entry.source)
        if total + len(data) > max_bytes:
            if entry.split == "val":
                raise CarryError(f"{max_bytes} bytes cannot hold the held-out utterances")
            break
        path = (target / entry.source).with_suffix(".flac")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        transcript = (corpus / entry.source).with_suffix(".txt")
        if transcript.is_file():
            shutil.copyfile(transcript, path.with_suffix(".txt"))
        total += len(data)
        chosen.append(entry)
    _check_ids(target, chosen, speakers)
    config = json.loads((prepared / "prepare_config.json").read_text())
    config["val_ids"] = sorted(e.id for e in chosen if e.split == "val")
    write_text_atomic(carry / PREPARE_YAML, yaml.safe_dump(config, sort_keys=False))
    summary = CarrySummary(
        corpus=target.name,
        utterances=len(chosen),
        of_utterances=len(entries),
        val=len(config["val_ids"]),
        minutes=round(_minutes(chosen, prepared), 2),
        of_minutes=round(_minutes(entries, prepared), 2),
        flac_bytes=total,
        max_bytes=max_bytes,
    )
    write_text_atomic(carry / CARRIED_JSON, summary.model_dump_json(indent=2))
    return summary


def _claim(carry: Path, name: str) -> Path:
    """Empty CARRY for a new pack (only a folder this module wrote, or a new one)."""
    if carry.exists() and any(carry.iterdir()) and not (carry / CARRIED_JSON).is_file():
        raise CarryError(f"{carry}: not empty and not a carry folder; choose another")
    if carry.exists():
        shutil.rmtree(carry)
    carry.mkdir(parents=True)
    return carry / name


def _check_ids(target: Path, chosen: list[ManifestEntry], speakers: list[str]) -> None:
    """The carried folder must give prepare the same ids and every speaker."""
    carried = {entry.speaker for entry in chosen}
    if carried != set(speakers):
        missing = sorted(set(speakers) - carried)
        raise CarryError(f"the budget leaves out every utterance of speaker(s) {missing}")
    found = sorted(source.utt_id for source in find_sources(target)[1])
    if found != sorted(entry.id for entry in chosen):
        raise CarryError(f"{target}: the carried files would get other utterance ids")


def _minutes(entries: list[ManifestEntry], prepared: Path) -> float:
    rate = json.loads((prepared / "feature_spec.json").read_text())["sample_rate"]
    return sum(entry.samples for entry in entries) / rate / 60


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.carry",
        description="Pack a prepared corpus's audio as lossless FLAC for a GPU machine "
        "(a deterministic subset when it does not fit MAX_MIB).",
    )
    parser.add_argument("corpus", help="corpus folder (what `wavenet corpus` wrote)")
    parser.add_argument("prepared", help="the folder `wavenet prepare` made of it")
    parser.add_argument("carry", help="output folder (replaced)")
    parser.add_argument("--max-mib", type=float, required=True, help="budget for the FLAC")
    parser.add_argument("--seed", type=int, default=0, help="order of training utterances")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        summary = pack_corpus(
            args.corpus, args.prepared, args.carry, int(args.max_mib * 2**20), args.seed
        )
    except (ValueError, OSError) as error:  # ConfigError, DatasetError, AudioError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"carried {summary.utterances} of {summary.of_utterances} utterances "
        f"({summary.minutes:.1f} of {summary.of_minutes:.1f} min, all {summary.val} held out) "
        f"in {summary.flac_bytes / 2**20:.1f} MiB of FLAC"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
