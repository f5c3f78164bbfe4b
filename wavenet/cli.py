"""The `wavenet` command. Each subcommand parses its arguments and hands over to a library."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wavenet.cli_types import (
    CommandError,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_device,
)

__all__ = ["get_parser", "main"]

USAGE_ERROR = 2


def _synthesize(args: argparse.Namespace) -> None:
    from wavenet.checkpoint import load_model
    from wavenet.inputs import resolve_speaker
    from wavenet.synthesis import plan_jobs, run_jobs

    jobs = plan_jobs(args.input, args.out)
    model = load_model(args.model, device=resolve_device(args.device))
    speaker = resolve_speaker(args.speaker, model.config.speakers)
    pitch = _synthesis_pitch(args, model, [job.source for job in jobs])
    run_jobs(model, jobs, speaker, args.temperature, True, pitch, args.f0, args.pitch_shift)
    print(f"wrote {len(jobs)} file(s) to {args.out}", file=sys.stderr)


def _synthesis_pitch(args: argparse.Namespace, model, sources: list):
    """The F0 handling of a pitch-aware model, with its pitch predictor loaded when a .npy
    mel needs one (CommandError for pitch options a model or input cannot take)."""
    from wavenet.errors import CheckpointError
    from wavenet.synthesis_f0 import (
        SynthesisF0,
        default_predictor_path,
        is_pitch_aware,
        load_pitch_predictor,
    )

    if not is_pitch_aware(model):
        if args.f0 is not None or args.pitch_shift or args.pitch_model is not None:
            raise CommandError(
                "the model is mel-only (not pitch-aware): --f0, --pitch-shift and "
                "--pitch-model need a pitch-aware model"
            )
        return None
    mels = [source for source in sources if source.suffix.lower() == ".npy"]
    if args.f0 is not None and (len(sources) != 1 or not mels):
        raise CommandError(
            "--f0 goes with one .npy mel (--input FILE.npy): audio inputs have their F0 "
            "tracked, and a folder's mels get theirs from the pitch predictor"
        )
    if not mels or args.f0 is not None:
        return SynthesisF0.for_model(model)
    path = args.pitch_model or default_predictor_path(args.model)
    try:
        return SynthesisF0.for_model(model, load_pitch_predictor(path, model))
    except CheckpointError as error:
        raise CommandError(
            f"{error}; a .npy mel needs F0 for this pitch-aware model: give --f0 FILE.npy or "
            "--pitch-model DIR"
        ) from None


def _semitones(text: str) -> float:
    """An argparse type: a pitch shift within +-12 semitones."""
    from wavenet.synthesis_f0 import PITCH_SHIFT_LIMIT

    value = float(text)
    if not abs(value) <= PITCH_SHIFT_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be within -{PITCH_SHIFT_LIMIT:g} to {PITCH_SHIFT_LIMIT:g} semitones, got {text}"
        )
    return value


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


def _add_synthesize(commands) -> None:
    synth = commands.add_parser(
        "synthesize",
        help="vocode audio files (copy synthesis) or .npy mels into wav files",
        description="Vocode a file or a folder. Audio inputs are turned into features with the "
        "model's FeatureSpec; .npy inputs are mels of shape (n_mels, frames). A pitch-aware "
        "model gets F0 tracked from audio inputs, and for a .npy mel from --f0 or else the "
        "pitch predictor; the excitation starts at phase 0.",
    )
    synth.add_argument("--model", required=True, help="checkpoint directory")
    synth.add_argument("--input", required=True, help="a wav/flac/ogg/npy file, or a folder")
    synth.add_argument("--out", required=True, help="output .wav file, or folder for a folder")
    synth.add_argument("--speaker", help="speaker name or id (multi-speaker models)")
    synth.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    synth.add_argument("--device", default="auto", help="auto, cpu or cuda")
    synth.add_argument(
        "--f0",
        type=Path,
        help="pitch-aware models: a .npy of F0 per frame (Hz, 0 = unvoiced) for a .npy mel input",
    )
    synth.add_argument(
        "--pitch-model",
        type=Path,
        help="pitch predictor for .npy mels without --f0 (default: beside --model, in pitch/)",
    )
    synth.add_argument(
        "--pitch-shift",
        type=_semitones,
        default=0.0,
        help="semitones, -12 to 12: F0 scaled by 2^(s/12) (at most the model's f0_max), the "
        "mel and so the formants kept",
    )
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


def _bench_service(args: argparse.Namespace) -> None:
    try:
        from service.hostile_bench import run_hostile
        from service.loadtest import LoadTestError, run
    except ImportError as error:
        raise CommandError(
            f"bench-service needs the serve extras ({error}): pip install 'wavenet-service[serve]'"
        ) from None
    try:
        run_hostile(args) if args.hostile else run(args)
    except LoadTestError as error:
        raise CommandError(str(error)) from None


def _add_bench_service(commands) -> None:
    from service.audio_codec import FORMATS

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
    bench.add_argument("--format", default="wav", choices=FORMATS, help="audio format")
    bench.add_argument(
        "--api-key",
        default=os.environ.get("WAVENET_API_KEY"),
        help="bearer key, when the service has one (default: $WAVENET_API_KEY)",
    )
    bench.add_argument(
        "--hostile",
        action="store_true",
        help="instead of the load levels, replay hostile clients one by one (odd upload rates, "
        "bodies cut short, half-sent requests, JSON amplification, huge headers, endless "
        "bodies, uploads without the key, slow bodies): per case what it got, the server's "
        "memory growth, and whether a valid request was served meanwhile within 5 s",
    )
    bench.add_argument(
        "--hold-seconds",
        type=positive_float,
        default=12.0,
        help="--hostile: how long half-sent requests and slow bodies wait for an answer "
        "(above WAVENET_HEADER_TIMEOUT_S and WAVENET_BODY_TIMEOUT_S to see them answered)",
    )
    bench.add_argument(
        "--metrics-url",
        help="--hostile: the service's /metrics, when WAVENET_METRICS_PORT serves it apart",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--out", help="also write the report as JSON here")
    bench.set_defaults(handler=_bench_service)


# The training commands (corpus ... bench) come from the training package, when it is
# installed: the serving image ships wavenet/ and service/ only, and offers the rest.
try:
    from training.commands import SUBCOMMANDS as TRAINING_SUBCOMMANDS
except ModuleNotFoundError as missing:
    # Any other module missing is a broken install rather than a serving image: say so.
    if missing.name not in ("training", "training.commands"):
        raise
    TRAINING_SUBCOMMANDS = []

# One entry per subcommand, in the order `wavenet --help` lists them.
SUBCOMMANDS = [
    _add_synthesize,
    _add_info,
    _add_serve,
    *TRAINING_SUBCOMMANDS,
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
    from wavenet.devices import DeviceError
    from wavenet.errors import AudioError, CheckpointError

    errors: list[type[Exception]] = [CommandError, AudioError, CheckpointError, DeviceError]
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
