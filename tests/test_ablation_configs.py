"""The ablation configs of the default model (models/default/ablation) are controlled pairs:
each differs from the shipped student's config in the setting it measures, and in nothing
else, so a score it gains or loses is that setting's (REPORT.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.distill_config import resolve_distill_config

ABLATION = Path(__file__).resolve().parents[1] / "models" / "default" / "ablation"
SHIPPED = "student_one_flow.yaml"


def read(name: str) -> dict:
    return yaml.safe_load((ABLATION / name).read_text())


@pytest.mark.parametrize(
    "variant, weights, keys",
    [
        ("student_one_flow_kl.yaml", {"kl": 1.0}, ["kl_warmup"]),
        ("student_one_flow_spectral.yaml", {"mel": 0.0}, []),
    ],
)
def test_each_variant_of_the_shipped_student_changes_what_it_measures_alone(variant, weights, keys):
    shipped, changed = read(SHIPPED), read(variant)
    for name, weight in weights.items():
        assert shipped["loss_weights"][name] != weight
        assert changed["loss_weights"].pop(name) == weight
        shipped["loss_weights"].pop(name, None)
    for key in keys:  # settings that only act with the measured term on
        changed.pop(key)
        shipped.pop(key)
    assert changed == shipped
    config = resolve_distill_config(ABLATION / variant, ["a", "b"])
    assert {name: getattr(config.loss_weights, name) for name in weights} == weights
