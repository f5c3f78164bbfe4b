"""Saving and loading models: `config.json` + `model.safetensors`, never pickle.

config.json records the model kind, its architecture config and its FeatureSpec, so a
directory alone rebuilds the model. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from pydantic import BaseModel, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from wavenet.errors import CheckpointError
from wavenet.features import FeatureSpec

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "load_model", "model_kinds", "save_model"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def model_kinds() -> dict[str, tuple[type[nn.Module], type[BaseModel]]]:
    """Model classes by the `kind` written in config.json, with their config classes."""
    from wavenet.classifier import Classifier, ClassifierConfig
    from wavenet.pitch_model import PitchPredictor, PitchPredictorConfig
    from wavenet.student import Student, StudentConfig
    from wavenet.teacher import Teacher, TeacherConfig

    return {
        "teacher": (Teacher, TeacherConfig),
        "student": (Student, StudentConfig),
        "classifier": (Classifier, ClassifierConfig),
        "pitch": (PitchPredictor, PitchPredictorConfig),
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_model(model: nn.Module, directory: str | Path, extra: dict | None = None) -> Path:
    """Write `model` (with `.kind`, `.config`, `.spec`) to `directory`.

    Args:
        model (nn.Module): A model of one of `model_kinds()`.
        directory (str | Path): Created if missing; existing files are replaced atomically.
        extra (dict | None): JSON-serialisable metadata stored in config.json (e.g. training step).

    Returns:
        Path: The directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{WEIGHTS_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, temp, metadata={"kind": model.kind})
        os.replace(temp, directory / WEIGHTS_FILE)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    document = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config.model_dump(mode="json"),
        "spec": model.spec.model_dump(mode="json"),
        "extra": extra or {},
    }
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(document, indent=2) + "\n").encode())
    return directory


def read_config(directory: str | Path) -> dict:
    """The parsed config.json of a checkpoint directory, with clear errors."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory (it does not exist)")
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (a checkpoint needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not {"kind", "config", "spec"} <= document.keys():
        raise CheckpointError(f"{path}: expected an object with 'kind', 'config' and 'spec'")
    return document


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from `directory` and load its weights, in eval mode.

    Raises:
        CheckpointError: naming the file, if anything is missing, corrupted or mismatched.
    """
    directory = Path(directory)
    document = read_config(directory)
    config_path = directory / CONFIG_FILE
    kinds = model_kinds()
    if document["kind"] not in kinds:
        raise CheckpointError(
            f"{config_path}: unknown model kind {document['kind']!r} (known: {', '.join(kinds)})"
        )
    model_class, config_class = kinds[document["kind"]]
    try:
        spec = FeatureSpec.model_validate(document["spec"])
        config = config_class.model_validate(document["config"])
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(
            f"{config_path}: invalid {where or 'value'}: {first['msg']}"
        ) from None
    model = model_class(config, spec)
    state = _read_weights(directory / WEIGHTS_FILE)
    _check_state_matches(model, state, directory / WEIGHTS_FILE)
    model.load_state_dict(state)
    return model.to(device).eval()


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


def _check_state_matches(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [
        f"{name} {tuple(state[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]})")
    if problems:
        raise CheckpointError(f"{path}: does not match {CONFIG_FILE}: " + "; ".join(problems))
