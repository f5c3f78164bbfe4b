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


# One entry per subcommand, in the order `wavenet --help` lists them.
SUBCOMMANDS = [_add_synthesize, _add_info, _add_serve]


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
