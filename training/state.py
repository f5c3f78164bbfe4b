"""Training-state checkpoints: weights, EMA, optimizer, step and RNG states, without pickle.

A checkpoint is a directory with two files: `state.safetensors` holds every tensor, and
`state.json` holds everything else, with each tensor replaced by a reference to its name
(`{"$tensor": "optimizer.state.3.exp_avg"}`). Dicts with non-string keys (an optimizer's
per-parameter state is keyed by int) are written as `{"$items": [[key, value], ...]}` so the
keys come back with their types.

The two files are written into a temporary directory that is then renamed into place; the
previous checkpoint is kept as `<name>.previous` until the new one is in place. A process
killed at any moment therefore leaves a complete checkpoint behind: the new one, or the old.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "capture_rng",
    "has_state",
    "load_state",
    "restore_rng",
    "save_state",
]

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def flatten(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready copy of `tree`, moving each tensor or array into `tensors` under its path."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous().clone()
        return {"$tensor": prefix}
    if isinstance(tree, np.ndarray):
        # safetensors has no uint32; int64 holds numpy's RNG words exactly.
        tensors[prefix] = torch.from_numpy(tree.astype(np.int64))
        return {"$ndarray": prefix, "dtype": str(tree.dtype)}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in tree):
            return {key: flatten(value, f"{prefix}.{key}", tensors) for key, value in tree.items()}
        return {"$items": [[k, flatten(v, f"{prefix}.{k}", tensors)] for k, v in tree.items()]}
    if isinstance(tree, list | tuple):
        return [flatten(value, f"{prefix}.{index}", tensors) for index, value in enumerate(tree)]
    return tree


def unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten` (tuples come back as lists)."""
    if isinstance(node, dict):
        if "$tensor" in node:
            return tensors[node["$tensor"]]
        if "$ndarray" in node:
            return tensors[node["$ndarray"]].numpy().astype(node["dtype"])
        if "$items" in node:
            return {key: unflatten(value, tensors) for key, value in node["$items"]}
        return {key: unflatten(value, tensors) for key, value in node.items()}
    if isinstance(node, list):
        return [unflatten(value, tensors) for value in node]
    return node


def capture_rng() -> dict:
    """The states of Python's, numpy's and torch's (CPU and CUDA) random generators."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    """Put back generator states from `capture_rng` (after a JSON round trip)."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if (
        state["cuda"]
        and torch.cuda.is_available()
        and len(state["cuda"]) == len(torch.cuda.get_rng_state_all())
    ):
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(directory: str | Path, tree: dict) -> None:
    """Write `tree` (nested dicts/lists of tensors, arrays and JSON values) as a checkpoint.

    Args:
        directory (str | Path): The checkpoint directory; replaced atomically if it exists.
        tree (dict): The state to save.
    """
    directory = Path(directory)
    temporary = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    previous = directory.with_name(f"{directory.name}.previous")
    directory.parent.mkdir(parents=True, exist_ok=True)
    # One process writes a run's checkpoints: leftovers are from writers killed mid-save.
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    document = flatten(tree, "state", tensors)
    save_file(tensors, temporary / STATE_TENSORS)
    (temporary / STATE_JSON).write_text(json.dumps(document) + "\n")
    for name in (STATE_TENSORS, STATE_JSON):
        _fsync(temporary / name)
    if directory.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(directory, previous)
    os.replace(temporary, directory)
    _fsync(directory.parent)
    shutil.rmtree(previous, ignore_errors=True)


def load_state(directory: str | Path) -> dict:
    """Read a checkpoint written by `save_state`, falling back to `<name>.previous`.

    Raises:
        FileNotFoundError: if neither holds a complete checkpoint.
    """
    directory = Path(directory)
    for candidate in (directory, directory.with_name(f"{directory.name}.previous")):
        if (candidate / STATE_JSON).is_file() and (candidate / STATE_TENSORS).is_file():
            tensors = load_file(candidate / STATE_TENSORS)
            return unflatten(json.loads((candidate / STATE_JSON).read_text()), tensors)
    raise FileNotFoundError(f"{directory}: no training checkpoint to resume from")


def has_state(directory: str | Path) -> bool:
    """Whether `directory` (or its `.previous` fallback) holds a checkpoint."""
    directory = Path(directory)
    return any(
        (candidate / STATE_JSON).is_file()
        for candidate in (directory, directory.with_name(f"{directory.name}.previous"))
    )


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk, so a rename never exposes unwritten data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
