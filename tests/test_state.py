"""Training-state checkpoints: exact round trips without pickle, and crash-safe replacement."""

from __future__ import annotations

import json
import random

import numpy as np
import torch
from safetensors.torch import load_file

from training.state import (
    STATE_JSON,
    STATE_TENSORS,
    capture_rng,
    has_state,
    load_state,
    restore_rng,
    save_state,
)


def _trained_adam() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        optimizer.step()
    return model, optimizer


def test_optimizer_and_model_state_round_trip_exactly(tmp_path):
    model, optimizer = _trained_adam()
    save_state(
        tmp_path / "checkpoint",
        {"step": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict()},
    )
    state = load_state(tmp_path / "checkpoint")
    assert state["step"] == 3
    fresh = torch.optim.Adam(model.parameters(), lr=0.5)
    fresh.load_state_dict(state["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.01
    for index, saved in optimizer.state_dict()["state"].items():
        for name, value in saved.items():
            torch.testing.assert_close(fresh.state_dict()["state"][index][name], value)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(state["model"][name], tensor)
    # No pickle anywhere: one safetensors file and one JSON document.
    files = {p.name for p in (tmp_path / "checkpoint").iterdir()}
    assert files == {STATE_TENSORS, STATE_JSON}
    assert "model.0.weight" in " ".join(load_file(tmp_path / "checkpoint" / STATE_TENSORS))
    json.loads((tmp_path / "checkpoint" / STATE_JSON).read_text())


def test_restored_rng_states_repeat_the_same_draws(tmp_path):
    save_state(tmp_path / "checkpoint", {"rng": capture_rng()})
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(load_state(tmp_path / "checkpoint")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2]
    torch.testing.assert_close(first[2], second[2])


def test_a_save_interrupted_at_any_point_leaves_a_loadable_checkpoint(tmp_path):
    directory = tmp_path / "checkpoint"
    save_state(directory, {"step": 1})
    # Killed after the old checkpoint was moved aside, while a new one was half written.
    directory.rename(tmp_path / "checkpoint.previous")
    half = tmp_path / ".checkpoint.tmp-12345"
    half.mkdir()
    (half / STATE_TENSORS).write_bytes(b"\x00\x01")
    assert has_state(directory)
    assert load_state(directory)["step"] == 1
    save_state(directory, {"step": 2})
    assert load_state(directory)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
