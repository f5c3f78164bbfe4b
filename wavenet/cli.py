"""The `wavenet` command. Each subcommand parses its arguments and hands over to a library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

__all__ = ["get_parser", "main"]

USAGE_ERROR = 2


class CommandError(Exception):
    """A problem with the command's inputs, reported in one line with exit code 2."""


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA when there is a GPU; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


def _synthesize(args: argparse.Namespace) -> None:
    from wavenet.checkpoint import load_model
    from wavenet.synthesis import plan_jobs, resolve_speaker, run_jobs

    jobs = plan_jobs(args.input, args.out)
    model = load_model(args.model, device=resolve_device(args.device))
    run_jobs(model, jobs, resolve_speaker(model, args.speaker), args.temperature)
    print(f"wrote {len(jobs)} file(s) to {args.out}", file=sys.stderr)


def _info(args: argparse.Namespace) -> None:
    import json

    from wavenet.checkpoint import load_model, read_config

    model = load_model(args.model)
    summary = {
        "kind": model.kind,
        "parameters": sum(p.numel() for p in model.parameters()),
        "receptive_field": model.receptive_field,
        "sample_rate": model.spec.sample_rate,
        "speakers": list(model.config.speakers),
        "spec": model.spec.model_dump(mode="json"),
        "config": model.config.model_dump(mode="json"),
        "extra": read_config(args.model).get("extra", {}),
    }
    print(json.dumps(summary, indent=2))


def _serve(args: argparse.Namespace) -> None:
    try:
        from service.app import run
    except ImportError:
        raise CommandError("the HTTP service is not available in this installation") from None
    run(model=args.model, host=args.host, port=args.port)


def _corpus(args: argparse.Namespace) -> None:
    from training.corpus import build_corpus, read_sentences, resolve_voices

    voices = resolve_voices(args.voices)
    sentences = read_sentences(args.sentences)
    summary = build_corpus(
        args.out,
        voices,
        sentences,
        minutes=args.minutes,
        max_utterances=args.utterances,
        sample_rate=args.sample_rate,
        seed=args.seed,
        workers=args.workers,
    )
    for name, reason in summary.failures.items():
        print(f"voice {name} skipped: {reason}", file=sys.stderr)
    speakers = len({row[1] for row in summary.rows})
    print(
        f"wrote {len(summary.rows)} utterance(s), {summary.seconds / 60:.1f} min, "
        f"{speakers} speaker(s) to {args.out}",
        file=sys.stderr,
    )


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
    import os

    if os.environ.get("RANK", "0") == "0":
        print(f"{kind} (EMA weights) saved to {model}", file=sys.stderr)


def _train_teacher(args: argparse.Namespace) -> None:
    from training.train_teacher import train_teacher

    _announce("teacher", train_teacher(*_run_arguments(args)))


def _train_classifier(args: argparse.Namespace) -> None:
    from training.train_classifier import train_classifier

    _announce("classifier", train_classifier(*_run_arguments(args)))


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
    )
    print(markdown_table(report))
    print(f"report written to {args.out}", file=sys.stderr)


def _add_synthesize(commands) -> None:
    synth = commands.add_parser(
        "synthesize",
        help="vocode audio files (copy synthesis) or .npy mels into wav files",
        description="Vocode a file or a folder. Audio inputs are turned into features with the "
        "model's FeatureSpec; .npy inputs are mels of shape (n_mels, frames).",
    )
    synth.add_argument("--model", required=True, help="checkpoint directory")
    synth.add_argument("--input", required=True, help="a wav/flac/ogg/npy file, or a folder")
    synth.add_argument("--out", required=True, help="output .wav file, or folder for a folder")
    synth.add_argument("--speaker", help="speaker name or id (multi-speaker models)")
    synth.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    synth.add_argument("--device", default="auto", help="auto, cpu or cuda")
    synth.set_defaults(handler=_synthesize)


def _add_info(commands) -> None:
    info = commands.add_parser("info", help="describe a checkpoint (kind, size, receptive field)")
    info.add_argument("--model", required=True, help="checkpoint directory")
    info.set_defaults(handler=_info)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--model", default=None, help="checkpoint directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)


def _add_corpus(commands) -> None:
    corpus = commands.add_parser(
        "corpus",
        help="synthesise a multi-speaker corpus with flite/festival voices",
        description="Read the shipped sentences with Debian's flite and festival voices into a "
        "VCTK-like layout: OUT/<speaker>/<utt_id>.wav and .txt, plus OUT/manifest.csv.",
    )
    corpus.add_argument("out", help="output folder (new or empty)")
    corpus.add_argument("--minutes", type=float, default=10.0, help="about this much audio")
    corpus.add_argument("--utterances", type=int, help="stop after this many utterances")
    corpus.add_argument("--voices", nargs="+", help="voice names (default: all)")
    corpus.add_argument("--sentences", help="text file, one sentence a line (default: shipped)")
    corpus.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz")
    corpus.add_argument("--seed", type=int, default=0, help="shuffles the sentences")
    corpus.add_argument("--workers", type=int, default=2, help="synthesisers run at once")
    corpus.set_defaults(handler=_corpus)


def _add_prepare(commands) -> None:
    prep = commands.add_parser(
        "prepare",
        help="resample, trim, normalise and cache features of a speech corpus for training",
        description="Read an LJSpeech layout, a VCTK-like layout (a folder per speaker) or a "
        "folder of wav/flac/ogg, and write audio/mel .npy files, manifest.jsonl with a seeded "
        "held-out split, and report.json listing every dropped file.",
    )
    prep.add_argument("data", help="corpus folder")
    prep.add_argument("out", help="output folder")
    prep.add_argument("--config", help="YAML PrepareConfig (feature spec, thresholds)")
    prep.add_argument("--val-fraction", type=float, help="held-out share (default 0.05)")
    prep.add_argument("--seed", type=int, help="seed of the held-out split (default 0)")
    prep.set_defaults(handler=_prepare)


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


def _add_run_options(parser: argparse.ArgumentParser, schema: str) -> None:
    """The options every training job takes."""
    parser.add_argument("--data", required=True, help="prepared corpus folder")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--config", help=f"YAML {schema} (default: built-in defaults)")
    parser.add_argument("--steps", type=int, help="total training steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


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
    distill.add_argument("--teacher", required=True, help="teacher checkpoint directory")
    distill.add_argument(
        "--classifier", help="classifier checkpoint directory (needed for the perceptual loss)"
    )
    _add_run_options(distill, "DistillConfig")
    distill.set_defaults(handler=_distill)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="held-out NLL and copy-synthesis scores, with a Griffin-Lim baseline row",
        description="Score a model on the held-out utterances of a prepared corpus (or on the "
        "audio files of a folder): teacher NLL in bits per sample (or, for a student given "
        "--teacher, its KL to the teacher in nats per sample), and log-mel L1, "
        "multi-resolution STFT distance, PESQ (16 kHz) and STOI of copy synthesis and of "
        "Griffin-Lim from the same mels. Writes a JSON report and prints a markdown table.",
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
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    evaluate.set_defaults(handler=_evaluate)


def _add_spectrogram(commands) -> None:
    from training.spectrogram import add_parser

    add_parser(commands)


def _bench(args: argparse.Namespace) -> None:
    from training.bench import run

    run(args, resolve_device(args.device))


def positive_int(text: str) -> int:
    """An argparse type: a whole number above zero."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


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
        "--compile", action="store_true", help="also time the student under torch.compile"
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--out", help="also write the report as JSON here")
    bench.set_defaults(handler=_bench)


def _bench_service(args: argparse.Namespace) -> None:
    try:
        from service.loadtest import LoadTestError, run
    except ImportError as error:
        raise CommandError(
            f"bench-service needs the serve extras ({error}): pip install 'wavenet-service[serve]'"
        ) from None
    try:
        run(args)
    except LoadTestError as error:
        raise CommandError(str(error)) from None


def _add_bench_service(commands) -> None:
    import os

    bench = commands.add_parser(
        "bench-service",
        help="load-test a service running on this machine (latency, throughput, overload)",
        description="At each concurrency level, that many clients send POST /v1/vocode "
        "requests of random mels back to back: latency p50/p95/p99, served requests and "
        "audio seconds per second, errors by status code. Then more requests at once than "
        "the queue holds: the 503s, and whether the next request is served. Loopback only; "
        "bounded by --requests-per-level and --max-seconds.",
    )
    bench.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    bench.add_argument(
        "--concurrency",
        type=positive_int,
        nargs="+",
        default=[1, 4, 16, 64],
        help="concurrent clients of each level",
    )
    bench.add_argument(
        "--requests-per-level",
        type=positive_int,
        default=64,
        help="requests per level (at least one per client)",
    )
    bench.add_argument(
        "--seconds", type=positive_float, default=1.0, help="audio per request, in seconds"
    )
    bench.add_argument(
        "--overload",
        type=non_negative_int,
        default=256,
        help="requests sent at once after the levels; above the service's queue "
        "(WAVENET_QUEUE_SIZE, default 64) plus a batch or two in progress; 0 skips it",
    )
    bench.add_argument(
        "--max-seconds",
        type=positive_float,
        default=300.0,
        help="no new request starts after this long (those in flight get --timeout)",
    )
    bench.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds one request may take"
    )
    bench.add_argument(
        "--format", default="wav", choices=["wav", "pcm16", "mulaw", "flac"], help="audio format"
    )
    bench.add_argument(
        "--api-key",
        default=os.environ.get("WAVENET_API_KEY"),
        help="bearer key, when the service has one (default: $WAVENET_API_KEY)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--out", help="also write the report as JSON here")
    bench.set_defaults(handler=_bench_service)


# One entry per subcommand, in the order `wavenet --help` lists them.
SUBCOMMANDS = [
    _add_synthesize,
    _add_info,
    _add_serve,
    _add_corpus,
    _add_prepare,
    _add_train_teacher,
    _add_train_classifier,
    _add_distill,
    _add_evaluate,
    _add_spectrogram,
    _add_bench,
    _add_bench_service,
]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wavenet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(commands)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input, reported in one line rather than as a traceback."""
    from wavenet.errors import AudioError, CheckpointError

    errors: list[type[Exception]] = [CommandError, AudioError, CheckpointError]
    try:
        from training.config import ConfigError

        errors.append(ConfigError)
    except ImportError:  # the serving image ships without the training extras
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except _user_errors() as error:
        print(f"wavenet {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
