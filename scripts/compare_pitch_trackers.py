"""Which pitch tracker labels this project's recorded speech best: Praat or WORLD.

Real recordings have no true F0, so each clip is first made into one with a known F0: WORLD
analyses it (Harvest F0, CheapTrick envelope, D4C aperiodicity) and resynthesises it from
exactly that F0 contour. The contour is then the truth, frame by frame, and the voice,
envelope and noise are the real speaker's. Each tracker runs on the resynthesis, at the mel's
frame centres (`FeatureSpec`: frame i centred on hop block i), and is scored over the frames
whose truth is clear (both 5 ms contour points around the centre voiced, or both unvoiced):

- voicing error: share of those frames whose voiced/unvoiced decision is wrong (missed:
  voiced frames called unvoiced; false: unvoiced frames called voiced);
- gross pitch error: share of the frames voiced in both that are more than 20% off;
- median error in cents over the voiced frames that are not gross errors;
- speed: seconds of audio per second of one CPU core.

The resynthesis favours WORLD: its truth is Harvest's own contour and its voicing is WORLD's
voicing, so Harvest is scored against itself. Measured on 2 prompts of each of the five
asterisk-core-sounds voice folders and 2 clips of each of the first 8 KLettres languages
(26 clips, 1.16 min, 16 kHz, hop 256; one core of the 2-core build machine):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/compare_pitch_trackers.py

    tracker                voicing err (missed, false)  gross err  cents  x real time
    praat_ac 600 Hz             14.1% (14.0%, 0.1%)      0.53%    9.3         278
    praat_ac 800 Hz             14.1% (14.0%, 0.1%)      0.73%    9.3         324
    praat_ac, silence 0.01      10.1% ( 9.9%, 0.2%)      1.03%    9.9         331
    world dio+stonemask         15.7% (15.2%, 0.5%)      0.75%    7.7         147
    world harvest                7.3% ( 1.2%, 6.1%)      3.63%   10.1           4

Praat's autocorrelation tracker is the choice (`wavenet.pitch`): the fewest gross (octave)
errors, almost no unvoiced frames called voiced, and fast enough to track the whole default
corpus (about 180 minutes) in about a minute of one core. Its missed voicing is the quiet
end of voiced stretches, 20-40 dB below the clip's loudest frame, where WORLD still voices
(Praat's silence threshold, 0.03 of the peak); a threshold of 0.01 halves those misses on
these clean prompts but tracks the noise floor of the KLettres recordings as voice of
500-900 Hz. DIO + StoneMask misses more voiced frames than Praat. Harvest voices the most,
but also calls 6% of the truly unvoiced frames voiced, makes five times Praat's gross
errors on its own resynthesis, and runs at 4 times real time: 45 minutes for the corpus.
A ceiling of 600 Hz keeps the recorded voices (their 95th percentiles are 250-450 Hz) and
makes fewer octave-up errors than 800 Hz.

pyworld is not a dependency of the project; install it into the environment by hand:

    .venv/bin/pip install "setuptools<81" pyworld    # pyworld imports pkg_resources
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from wavenet.audio import load_audio
from wavenet.features import FeatureSpec
from wavenet.pitch import PitchSpec, track_f0

ASTERISK = Path("/usr/share/asterisk/sounds")
KLETTRES = Path("/usr/share/klettres")
FRAME_MS = 5.0  # the WORLD analysis and resynthesis frame period
GROSS = 0.2  # relative error beyond which a voiced frame counts as a gross error


def _pyworld():
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyworld's own pkg_resources deprecation
            import pyworld
    except ImportError:
        sys.exit(
            "this script needs pyworld, which the project does not depend on:\n"
            '  .venv/bin/pip install "setuptools<81" pyworld'
        )
    return pyworld


def decode_g722(path: Path) -> np.ndarray:
    """A 16 kHz asterisk prompt (G.722 at 64 kbit/s) as float64 samples in [-1, 1]."""
    import G722

    pcm = np.asarray(G722.G722(16000, 64000).decode(path.read_bytes()), dtype=np.float64)
    return pcm / 32768.0


def clips(per_voice: int, klettres_languages: int) -> list[tuple[str, np.ndarray]]:
    """(name, 16 kHz waveform) of the chosen clips, the same on every run."""
    chosen = []
    for voice in sorted(p for p in ASTERISK.iterdir() if p.is_dir() and not p.is_symlink()):
        files = sorted(voice.glob("*.g722"), key=lambda p: p.stat().st_size)
        # Long prompts (sentences) from the upper half of the sizes, spread evenly.
        for path in files[len(files) // 2 :: max(1, len(files) // (2 * per_voice))][:per_voice]:
            chosen.append((f"{voice.name}/{path.stem}", decode_g722(path)))
    languages = sorted(p for p in KLETTRES.iterdir() if p.is_dir() and not p.is_symlink())
    for language in languages[:klettres_languages]:
        files = sorted(language.rglob("*.ogg"), key=lambda p: (-p.stat().st_size, p.name))
        for path in files[:per_voice]:
            audio = load_audio(path, 16000).numpy().astype(np.float64)
            chosen.append((f"klettres/{language.name}/{path.stem}", audio))
    return [(name, 0.5 * audio / np.abs(audio).max()) for name, audio in chosen]


def resynthesise(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """WORLD resynthesis of `audio` from its Harvest F0 contour: (audio, contour every 5 ms)."""
    pw = _pyworld()
    f0, times = pw.harvest(audio, rate, f0_floor=50.0, f0_ceil=800.0, frame_period=FRAME_MS)
    envelope = pw.cheaptrick(audio, f0, times, rate)
    aperiodicity = pw.d4c(audio, f0, times, rate)
    return pw.synthesize(f0, envelope, aperiodicity, rate, FRAME_MS), f0


def truth_at_frames(contour: np.ndarray, frames: int, spec: FeatureSpec) -> np.ndarray:
    """The contour at the frame centres: interpolated where both neighbours are voiced, 0
    where both are unvoiced, NaN (not scored) where voicing changes between them."""
    centres_ms = (np.arange(frames) + 0.5) * spec.hop_length / spec.sample_rate * 1000
    left = np.minimum((centres_ms // FRAME_MS).astype(int), contour.size - 1)
    right = np.minimum(left + 1, contour.size - 1)
    weight = centres_ms / FRAME_MS - left
    a, b = contour[left], contour[right]
    truth = np.where((a > 0) & (b > 0), a + (b - a) * weight, np.nan)
    return np.where((a == 0) & (b == 0), 0.0, truth)


def world_tracker(name: str, spec: FeatureSpec) -> Callable[[np.ndarray], np.ndarray]:
    """WORLD's DIO + StoneMask or Harvest, sampled at the mel's frame centres.

    WORLD puts frame k at k * period; with the period one hop and hop / 2 zeros in front,
    its frame k + 1 lies on the centre of hop block k.
    """
    pw = _pyworld()
    rate, hop = spec.sample_rate, spec.hop_length
    period = 1000.0 * hop / rate

    def track(audio: np.ndarray) -> np.ndarray:
        frames = spec.frames_for(audio.size)
        padded = np.concatenate([np.zeros(hop // 2), audio, np.zeros(frames * hop - audio.size)])
        if name == "harvest":
            f0, times = pw.harvest(padded, rate, f0_floor=50.0, f0_ceil=800.0, frame_period=period)
        else:
            f0, times = pw.dio(padded, rate, f0_floor=50.0, f0_ceil=800.0, frame_period=period)
            f0 = pw.stonemask(padded, f0, times, rate)
        return f0[1 : frames + 1]

    return track


def score(truth: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """Voicing error, gross pitch error and median cents over the frames with a clear truth."""
    clear = ~np.isnan(truth)
    truth, estimate = truth[clear], estimate[clear]
    voicing = float(np.mean((truth > 0) != (estimate > 0)))
    missed = float(np.mean((truth > 0) & (estimate == 0)))
    both = (truth > 0) & (estimate > 0)
    ratio = estimate[both] / truth[both]
    gross = np.abs(ratio - 1) > GROSS
    cents = np.abs(1200 * np.log2(ratio[~gross]))
    return {
        "voicing_error": voicing,
        "missed": missed,
        "false_voiced": voicing - missed,
        "gross_pitch_error": float(np.mean(gross)) if both.any() else float("nan"),
        "median_cents": float(np.median(cents)) if cents.size else float("nan"),
        "frames": int(clear.sum()),
    }


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-voice", type=int, default=2, help="clips per voice or language")
    parser.add_argument("--klettres-languages", type=int, default=8, help="klettres languages")
    parser.add_argument("--f0-max", type=float, nargs="+", default=[600.0, 800.0])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    spec = FeatureSpec()
    variants = {f"praat_ac {f0_max:.0f} Hz": PitchSpec(f0_max=f0_max) for f0_max in args.f0_max}
    # Quieter voiced frames, at the price of the noise floor of noisy recordings (KLettres).
    variants["praat_ac, silence 0.01"] = PitchSpec(silence_threshold=0.01)
    trackers = {
        name: lambda audio, pitch=pitch: track_f0(audio, spec, pitch)
        for name, pitch in variants.items()
    }
    trackers["world dio+stonemask"] = world_tracker("dio", spec)
    trackers["world harvest"] = world_tracker("harvest", spec)
    chosen = clips(args.per_voice, args.klettres_languages)
    seconds = sum(audio.size for _, audio in chosen) / spec.sample_rate
    print(f"{len(chosen)} clips, {seconds / 60:.2f} min", file=sys.stderr)
    made = [resynthesise(audio, spec.sample_rate) for _, audio in chosen]
    print(f"{'tracker':22s} voicing err (missed, false)  gross err  cents  x real time")
    for name, track in trackers.items():
        truths, estimates, spent = [], [], 0.0
        for audio, contour in made:
            started = time.process_time()
            estimate = track(audio)
            spent += time.process_time() - started
            truths.append(truth_at_frames(contour, estimate.size, spec))
            estimates.append(estimate)
        row = score(np.concatenate(truths), np.concatenate(estimates))
        print(
            f"{name:22s} {row['voicing_error']:10.1%} ({row['missed']:5.1%}, "
            f"{row['false_voiced']:4.1%}) {row['gross_pitch_error']:10.2%} "
            f"{row['median_cents']:6.1f} {seconds / spent:11.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
