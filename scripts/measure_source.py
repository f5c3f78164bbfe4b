"""Score the training-free harmonic-plus-noise source against real recordings and Griffin-Lim.

Each clip's mel (`FeatureSpec.extract`) and F0 (`wavenet.pitch.track_f0`) are synthesised by
`wavenet.source.HarmonicNoiseSource` with its initial (training-free) gains, and Griffin-Lim
inverts the same mel; both are scored against the recording with `training.evaluate.score`
(log-mel L1, MR-STFT, PESQ-WB, STOI) and `training.metrics.periodicity`. The source's cost is
the CPU time of its calls (after a first call that builds its tables), per 10 s of audio.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_source.py --clips 10 --png /tmp/source.png
    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_source.py \
        --data data/default/prepared --split val --clips 8 --resynthesis 1

Clips: G.722 prompts of one asterisk voice, those of 2-6 s, evenly spaced in name order; or,
with --data, the first clips of a held-out split of a prepared corpus in speaker turns (the
clips `wavenet evaluate --clips N` scores), with the corpus's tracked F0.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.evaluate import griffin_lim, score
from training.metrics import periodicity
from wavenet.excitation import initial_phase
from wavenet.features import FeatureSpec
from wavenet.pitch import track_f0
from wavenet.source import HarmonicNoiseSource, SourceConfig

SOUNDS = Path("/usr/share/asterisk/sounds")
METRICS = ("pesq_wb", "stoi", "log_mel_l1", "mrstft", "periodicity", "noise_floor_db")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice", default="en_US_f_Allison", help="Folder under the sounds.")
    parser.add_argument("--sounds", type=Path, default=SOUNDS, help="Asterisk sounds folder.")
    parser.add_argument("--clips", type=int, default=10, help="How many prompts to score.")
    parser.add_argument("--seed", type=int, default=0, help="Phase and noise seed.")
    parser.add_argument("--png", type=Path, help="Write real/source/Griffin-Lim spectrograms.")
    parser.add_argument("--data", type=Path, help="A prepared corpus instead of the prompts.")
    parser.add_argument("--split", default="val", help="The corpus's split (val, unseen).")
    for name, field in SourceConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), help=field.description)
    return parser


def load_prompts(folder: Path, count: int, rate: int) -> list[tuple[str, np.ndarray]]:
    """`count` G.722 prompts of 2-6 s from `folder`, evenly spaced in name order, in [-1, 1]."""
    import G722

    codec, chosen = G722.G722(rate, 64000), []
    for path in sorted(folder.glob("*.g722")):
        # 64 kbit/s: 8,000 bytes a second
        if 2 * 8000 <= path.stat().st_size <= 6 * 8000:
            chosen.append(path)
    if not chosen:
        raise SystemExit(f"no 2-6 s .g722 prompts in {folder}")
    picks = np.linspace(0, len(chosen) - 1, min(count, len(chosen))).round().astype(int)
    prompts = []
    for index in picks:
        audio = np.asarray(codec.decode(chosen[index].read_bytes()), dtype=np.float32) / 32768
        prompts.append((chosen[index].stem, audio))
    return prompts


def load_split(data: Path, split: str, count: int, spec: FeatureSpec) -> list[tuple]:
    """The first `count` clips of a prepared corpus's `split`, in speaker turns: (id, audio,
    tracked F0) each."""
    from training.eval_clips import load_splits

    splits = load_splits(data, spec, [])
    if split not in splits:
        raise SystemExit(f"{data} has no split {split!r} (it has {', '.join(splits)})")
    return [(clip.id, clip.audio, clip.f0) for clip in splits[split][:count]]


def synthesise(source: HarmonicNoiseSource, audio: np.ndarray, seed: int, f0=None):
    """(source audio, Griffin-Lim audio, f0, CPU seconds of the source) of one recording;
    F0 tracked here unless given."""
    spec = source.spec
    mel = spec.extract(torch.from_numpy(audio))
    f0 = torch.from_numpy(track_f0(audio, spec) if f0 is None else np.asarray(f0))
    generator = torch.Generator().manual_seed(seed)
    phase = initial_phase(1, generator)
    with torch.no_grad():
        started = time.process_time()
        made = source(mel[None], f0[None], phase, generator).waveform[0]
        cpu = time.process_time() - started
    return made.numpy(), griffin_lim(mel, spec, seed), f0, cpu


def render(path: Path, rows: dict[str, np.ndarray], f0: torch.Tensor, spec: FeatureSpec) -> None:
    """Log spectrograms (64 ms windows) of each row, F0 and its 2nd-4th harmonics overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(rows), 1, figsize=(12, 3.2 * len(rows)), sharex=True)
    times = (np.arange(len(f0)) + 0.5) * spec.hop_length / spec.sample_rate
    voiced = np.where(f0.numpy() > 0, f0.numpy(), np.nan)
    for axis, (name, audio) in zip(axes, rows.items(), strict=True):
        axis.specgram(audio, NFFT=1024, Fs=spec.sample_rate, noverlap=1024 - 128, vmin=-130)
        for k in range(1, 5):
            axis.plot(times, k * voiced, "w", linewidth=0.6, alpha=0.6)
        axis.set_ylim(0, spec.sample_rate / 2)
        axis.set_title(name)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    path.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    torch.set_num_threads(1)
    fields = SourceConfig.model_fields
    overrides = {n: getattr(args, n) for n in fields if getattr(args, n) is not None}
    spec, config = FeatureSpec(), SourceConfig(**overrides)
    source = HarmonicNoiseSource(spec, config).eval()
    if args.data is None:
        print(f"{args.voice}, {config}")
        prompts = load_prompts(args.sounds / args.voice, args.clips, spec.sample_rate)
        prompts = [(name, audio, None) for name, audio in prompts]
    else:
        print(f"{args.data} {args.split}, {config}")
        prompts = load_split(args.data, args.split, args.clips, spec)
    synthesise(source, prompts[0][1], args.seed, prompts[0][2])  # builds the cached tables
    table: dict[str, list[dict]] = {"source": [], "griffin_lim": []}
    cpu, seconds = 0.0, 0.0
    for number, (name, audio, tracked) in enumerate(prompts):
        made, baseline, f0, clip_cpu = synthesise(source, audio, args.seed, tracked)
        cpu, seconds = cpu + clip_cpu, seconds + len(audio) / spec.sample_rate
        for system, estimate in (("source", made), ("griffin_lim", baseline)):
            values = score(audio, estimate, spec)[0]
            values["periodicity"] = periodicity(estimate[: len(audio)], spec.sample_rate)
            table[system].append(values)
        row = " ".join(f"{m} {table['source'][-1][m] or float('nan'):.3f}" for m in METRICS)
        print(f"{name:32s} {len(audio) / spec.sample_rate:4.1f} s  {row}")
        if args.png and number == 0:
            rows = {"real": audio, "source": made[: len(audio)], "Griffin-Lim": baseline}
            render(args.png, rows, f0, spec)
    print(f"\n| system | {' | '.join(METRICS)} |\n|---|{'---|' * len(METRICS)}")
    for system, rows in table.items():
        means = [np.mean([r[m] for r in rows if r[m] is not None]) for m in METRICS]
        print(f"| {system} | {' | '.join(f'{v:.3f}' for v in means)} |")
    print(f"\nsource: {10 * cpu / seconds:.3f} s of CPU per 10 s of audio (one thread)")


if __name__ == "__main__":
    main()
