"""The training side of the `wavenet` command: corpus, prepare, train-*, distill, evaluate,
spectrogram and bench.

`wavenet.cli` registers these only when this package is installed; the serving image has no
`training/`. Registering them must cost nothing beyond argparse: each handler imports its
library (torch jobs, pyyaml, librosa, matplotlib) when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from wavenet.cli_types import positive_float, positive_int, resolve_device

__all__ = ["SUBCOMMANDS"]


def _corpus(args: argparse.Namespace) -> None:
    from training.corpus import run

    run(args)


def _prepare(args: argparse.Namespace) -> None:
    from training.prepare import prepare, print_report

    print_report(prepare(args.data, args.out, args.config, args.val_fraction, args.seed))


def _run_arguments(args: argparse.Namespace) -> tuple:
    """The arguments every training job takes, in its order: data, out, config, steps,
    resume, device."""
    device = resolve_device(args.device)
    return args.data, args.out, args.config, args.steps, args.resume, device


def _announce(kind: str, model) -> None:
    """Say where the model went, once (rank 0) under torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(f"{kind} (EMA weights) saved to {model}", file=sys.stderr)


def _train_teacher(args: argparse.Namespace) -> None:
    from training.train_teacher import train_teacher

    _announce("teacher", train_teacher(*_run_arguments(args)))


def _train_classifier(args: argparse.Namespace) -> None:
    from training.train_classifier import train_classifier

    _announce("classifier", train_classifier(*_run_arguments(args)))


def _train_pitch(args: argparse.Namespace) -> None:
    from training.train_pitch import train_pitch

    _announce("pitch predictor", train_pitch(*_run_arguments(args)))


def _distill(args: argparse.Namespace) -> None:
    from training.distill import distill

    _announce("student", distill(args.teacher, args.classifier, *_run_arguments(args)))


def _evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate, markdown_table

    report = evaluate(
        args.model,
        args.data,
        args.out,
        max_seconds=args.max_seconds,
        clips=args.clips,
        device=resolve_device(args.device),
        teacher=args.teacher,
        pitch=args.pitch,
    )
    print(markdown_table(report))
    print(f"report written to {args.out}", file=sys.stderr)


def _spectrogram(args: argparse.Namespace) -> None:
    from training.spectrogram import run

    run(args, resolve_device(args.device))


def _bench(args: argparse.Namespace) -> None:
    from training.bench import run

    run(args, resolve_device(args.device))


def _add_corpus(commands) -> None:
    sources = ("asterisk", "klettres", "synthetic", "festival-intl")  # training.corpus.SOURCES
    corpus = commands.add_parser(
        "corpus",
        help="build a multi-speaker corpus: recorded prompts and flite/festival voices",
        description="Gather the recorded speech Debian installs (Asterisk's G.722 prompts, "
        "KLettres' letters and syllables) and synthesise the shipped sentences with flite and "
        "festival voices (English and five other languages) into a VCTK-like layout: "
        "OUT/<speaker>/<utt_id>.wav and .txt, OUT/manifest.csv (with each clip's source, "
        "language and licence) and OUT/report.json (minutes per source, every skipped input "
        "with its reason).",
    )
    corpus.add_argument("out", help="output folder (new or empty)")
    corpus.add_argument(
        "--sources",
        nargs="+",
        choices=sources,
        metavar="SOURCE",
        help="%(choices)s (default: all; with --voices, the sources of the voices named)",
    )
    corpus.add_argument(
        "--minutes", type=float, default=10.0, help="about this much from each synthesised source"
    )
    corpus.add_argument(
        "--recorded-minutes",
        type=float,
        help="at most about this much from each recorded source (default: all of it)",
    )
    corpus.add_argument("--utterances", type=int, help="at most this many clips from each source")
    corpus.add_argument(
        "--voices",
        nargs="+",
        help="synthetic voice names (default: all at 16 kHz or more; a voice named is used "
        "whatever its rate)",
    )
    corpus.add_argument("--sentences", help="text file the English voices read (default: shipped)")
    corpus.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz")
    corpus.add_argument("--seed", type=int, default=0, help="shuffles sentences and draws clips")
    corpus.add_argument("--workers", type=int, default=2, help="synthesisers run at once")
    corpus.set_defaults(handler=_corpus)


def _add_prepare(commands) -> None:
    prep = commands.add_parser(
        "prepare",
        help="resample, trim, normalise and cache features of a speech corpus for training",
        description="Read an LJSpeech layout, a VCTK-like layout (a folder per speaker) or a "
        "folder of wav/flac/ogg, and write audio/mel/F0 .npy files, manifest.jsonl with a "
        "seeded held-out split of the training speakers and a speaker kept out of training "
        "(unseen), and report.json listing every dropped file and each speaker's minutes "
        "and F0.",
    )
    prep.add_argument("data", help="corpus folder")
    prep.add_argument("out", help="output folder")
    prep.add_argument(
        "--config", help="YAML PrepareConfig (feature spec, pitch tracker, unseen speakers)"
    )
    prep.add_argument("--val-fraction", type=float, help="held-out share (default 0.05)")
    prep.add_argument("--seed", type=int, help="seed of the held-out split (default 0)")
    prep.set_defaults(handler=_prepare)


def _add_run_options(parser: argparse.ArgumentParser, schema: str) -> None:
    """The options every training job takes."""
    parser.add_argument("--data", required=True, help="prepared corpus folder")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--config", help=f"YAML {schema} (default: built-in defaults)")
    parser.add_argument("--steps", type=int, help="total training steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.epilog = (
        "With `keep_best: val_NAME` in the config, RUN/best also holds the EMA model of the "
        "lowest held-out score yet, the untrained start (scored as step 0) included."
    )


def _add_train_teacher(commands) -> None:
    train = commands.add_parser(
        "train-teacher",
        help="train the WaveNet teacher on a prepared corpus",
        description="Maximum-likelihood training on random crops of a folder written by "
        "`wavenet prepare`. Under `torchrun --nproc_per_node N` it trains with DDP. RUN gets "
        "config.yaml, metrics.jsonl, tensorboard/, checkpoint/ (to resume) and model/ (the "
        "EMA teacher).",
    )
    _add_run_options(train, "TeacherTrainConfig")
    train.set_defaults(handler=_train_teacher)


def _add_train_classifier(commands) -> None:
    train = commands.add_parser(
        "train-classifier",
        help="train the speech classifier behind the distillation's perceptual loss",
        description="Fit pseudo-phone units (k-means over the MFCC frames of the train split) "
        "and train a WaveNet-like classifier on random crops to predict each frame's unit and "
        "the speaker. Under `torchrun` it trains with DDP. RUN gets config.yaml, units.npz, "
        "metrics.jsonl (with held-out accuracy), tensorboard/, checkpoint/ and model/.",
    )
    _add_run_options(train, "ClassifierTrainConfig")
    train.set_defaults(handler=_train_classifier)


def _add_train_pitch(commands) -> None:
    train = commands.add_parser(
        "train-pitch",
        help="train the pitch predictor (log-mel -> voicing and F0) on a prepared corpus",
        description="Train a small frame-rate network to predict each mel frame's voicing and "
        "F0 from the F0 the corpus's pitch tracker cached, so that a client who sends only a "
        "mel still gets pitch. The tracker settings (PitchSpec) must match the corpus's. "
        "Under `torchrun` it trains with DDP. RUN gets config.yaml, metrics.jsonl (with "
        "held-out voicing error, gross pitch error and median cents), tensorboard/, "
        "checkpoint/ and model/.",
    )
    _add_run_options(train, "PitchTrainConfig")
    train.set_defaults(handler=_train_pitch)


def _add_distill(commands) -> None:
    distill = commands.add_parser(
        "distill",
        help="distil a Parallel WaveNet student from a trained teacher",
        description="Probability density distillation: the student's own samples are scored "
        "by the frozen teacher (exact KL), plus power, multi-resolution STFT, perceptual and "
        "contrastive losses, each weighted in the config (0 = off). Under `torchrun` it trains "
        "with DDP. RUN gets config.yaml, metrics.jsonl, tensorboard/, checkpoint/ and model/ "
        "(the EMA student).",
    )
    distill.add_argument(
        "--teacher",
        help="teacher checkpoint directory (needed unless the config's weights of the terms "
        "that run the teacher, kl and contrastive, are 0)",
    )
    distill.add_argument(
        "--classifier", help="classifier checkpoint directory (needed for the perceptual loss)"
    )
    _add_run_options(distill, "DistillConfig")
    distill.set_defaults(handler=_distill)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="held-out NLL and copy-synthesis scores, with a Griffin-Lim baseline row",
        description="Score a model on each held-out split of a prepared corpus, named in the "
        "report: the training speakers' held-out utterances (val) and the speakers kept out "
        "of training (unseen); or on the audio files of a folder. Teacher NLL in bits per "
        "sample (or, for a student given --teacher, its KL to the teacher in nats per "
        "sample), and log-mel L1, "
        "multi-resolution STFT distance, PESQ (16 kHz), STOI, periodicity in the tracker's "
        "voiced frames and the noise floor (dB against the recording where it is 50 dB below "
        "its peak) of copy synthesis and of Griffin-Lim from the same mels. A pitch-aware "
        "model vocodes from the corpus's tracker F0 and, with --pitch, also from the F0 a "
        "pitch predictor reads off the mel; a student with a harmonic source is shown beside "
        "its untrained start. A pitch predictor is scored instead against the "
        "tracker's F0 on each held-out split (seen speakers, unseen speaker): voicing error, "
        "gross pitch error and median error in cents. Writes a JSON report and prints a "
        "markdown table.",
    )
    evaluate.add_argument("--model", required=True, help="checkpoint directory")
    evaluate.add_argument("--data", required=True, help="prepared corpus or folder of audio")
    evaluate.add_argument("--out", required=True, help="report .json file")
    evaluate.add_argument(
        "--max-seconds", type=float, default=120.0, help="time budget for sampling clips"
    )
    evaluate.add_argument("--clips", type=int, default=3, help="held-out clips to synthesise")
    evaluate.add_argument(
        "--teacher", help="for a student: its teacher's checkpoint, to add the KL to the teacher"
    )
    evaluate.add_argument(
        "--pitch",
        metavar="MODEL_DIR",
        help="for a pitch-aware model: a pitch predictor, to add rows from its F0 (mel only)",
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.set_defaults(handler=_evaluate)


def _add_spectrogram(commands) -> None:
    spectrogram = commands.add_parser(
        "spectrogram",
        help="spectrograms of one held-out clip: real, Griffin-Lim and each model",
        description="Vocode one held-out clip's real mel with each model (copy synthesis), "
        "invert it with Griffin-Lim, and draw every row as a log spectrogram in one PNG, "
        "each titled with its periodicity (about 0.9 for voiced speech, low for a whisper "
        "or noise). A pitch-aware model is given the clip's tracker F0, whose contour is drawn "
        "over the real row and over that model's row. A teacher samples within "
        "--max-seconds; all rows share the length made.",
    )
    spectrogram.add_argument(
        "--model", required=True, nargs="+", help="checkpoint directories, one row each"
    )
    spectrogram.add_argument("--data", required=True, help="prepared corpus or folder of audio")
    spectrogram.add_argument("--out", required=True, help="PNG file to write")
    spectrogram.add_argument(
        "--clip", help="id of a held-out clip, val or unseen (default: the first val clip)"
    )
    spectrogram.add_argument(
        "--max-seconds", type=float, default=300.0, help="time budget for a teacher's sampling"
    )
    spectrogram.add_argument("--device", default="auto", help="auto, cpu or cuda")
    spectrogram.set_defaults(handler=_spectrogram)


def _add_bench(commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure student and teacher generation speed on this machine",
        description="On one device: student samples/s and real-time factor per batch size and "
        "utterance length, the teacher's incremental samples/s, their ratio, peak memory, and "
        "FLOP/s against the measured matmul peak; on CUDA also fp16 autocast (and "
        "torch.compile with --compile). Medians of repeated runs after a warm-up. A model is "
        "a checkpoint directory, or a training .yaml whose layout runs with random weights.",
    )
    bench.add_argument(
        "--model",
        "--student",
        dest="model",
        nargs="+",
        metavar="PATH",
        help="student checkpoint directories or distillation .yaml configs (bare names are "
        "looked up among the shipped configs); default models/default/student if present, "
        "else student_cpu.yaml",
    )
    bench.add_argument(
        "--teacher",
        metavar="PATH",
        help="teacher checkpoint directory or training .yaml; default models/default/teacher "
        "if present, else teacher.yaml",
    )
    bench.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto takes CUDA when there is a GPU",
    )
    bench.add_argument(
        "--seconds",
        type=positive_float,
        nargs="+",
        default=[1.0, 10.0],
        help="utterance lengths of the student runs",
    )
    bench.add_argument(
        "--batches", type=positive_int, nargs="+", default=[1, 4, 16], help="student batch sizes"
    )
    bench.add_argument(
        "--teacher-frames", type=positive_int, default=4, help="mel frames per teacher run"
    )
    bench.add_argument("--repeats", type=positive_int, default=3, help="timed runs per case")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    bench.add_argument(
        "--compile",
        action="store_true",
        help="on CUDA, also time the student under torch.compile (CUDA graphs)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--out", help="also write the report as JSON here")
    bench.set_defaults(handler=_bench)


# In the order `wavenet --help` lists them, between `serve` and `bench-service`.
SUBCOMMANDS = [
    _add_corpus,
    _add_prepare,
    _add_train_teacher,
    _add_train_classifier,
    _add_train_pitch,
    _add_distill,
    _add_evaluate,
    _add_spectrogram,
    _add_bench,
]
