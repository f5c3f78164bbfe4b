"""`wavenet train-classifier`: units fitted and saved, labelled crops, held-out accuracy above
the most-frequent-unit baseline after a short run, resume, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from distill_fixtures import CONFIGS, config_file

from training.classifier_config import resolve_classifier_config
from training.config import ConfigError
from training.dataset import load_prepared
from training.monitor import read_metrics
from training.state import load_state
from training.train_classifier import IGNORE, UNITS_FILE, UnitCrops, train_classifier
from training.units import load_units
from wavenet import Classifier, load_model
from wavenet.cli import main

TINY = "classifier_tiny.yaml"


@pytest.fixture(scope="module")
def trained(prepared_corpus, tmp_path_factory):
    """The tiny config's whole run (60 steps) through the CLI."""
    run = tmp_path_factory.mktemp("classifier") / "run"
    arguments = ["--data", str(prepared_corpus), "--out", str(run), "--device", "cpu"]
    assert main(["train-classifier", *arguments, "--config", str(CONFIGS / TINY)]) == 0
    return run


def test_a_short_run_beats_the_most_frequent_unit_on_held_out_frames(trained):
    records = read_metrics(trained)
    evaluated = [r for r in records if "val_unit_accuracy" in r]
    assert [r["step"] for r in evaluated] == [20, 40, 60]
    # Honest about a 60-step run of a tiny model on 20 s of speech: the held-out loss
    # falls and the accuracy passes chance (always the most frequent unit), by a little.
    assert evaluated[-1]["val_unit_ce"] < evaluated[0]["val_unit_ce"] - 0.2
    assert evaluated[-1]["val_unit_accuracy"] > evaluated[-1]["val_unit_baseline"]
    assert records[-1]["unit_ce"] < records[0]["unit_ce"]
    assert 0 <= evaluated[-1]["val_speaker_accuracy"] <= 1


def test_the_model_loads_with_its_units_and_the_unit_model_beside_it(trained, prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    model = load_model(trained / "model")
    assert isinstance(model, Classifier)
    assert model.config.units == [f"unit{i}" for i in range(8)]
    assert model.config.speakers == corpus.speakers
    units = load_units(trained / "model" / UNITS_FILE)
    assert units.centres.shape == (8, 39)
    assert (trained / UNITS_FILE).read_bytes() == (trained / "model" / UNITS_FILE).read_bytes()
    labels = units.assign(torch.from_numpy(np.array(corpus.val[0].load(corpus.spec)[1])))
    assert labels.shape == (corpus.val[0].frames,) and 0 <= int(labels.min()) <= 7
    extra = json.loads((trained / "model" / "config.json").read_text())["extra"]
    assert extra["units_file"] == UNITS_FILE and extra["step"] == 60


def test_crops_carry_the_units_of_their_frames_and_ignore_padding(prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    short = min(corpus.train, key=lambda u: u.frames)
    labels = {short.entry.id: np.arange(short.frames) % 8}
    crops = UnitCrops(labels, [short], corpus.spec, short.frames + 3, seed=0)
    item = crops.item(short, 0)
    assert item["units"].tolist() == labels[short.entry.id].tolist() + [IGNORE] * 3
    assert item["mel"].shape[-1] == len(item["units"])
    middle = UnitCrops(labels, [short], corpus.spec, 4, seed=0).item(short, 5)
    assert middle["units"].tolist() == [5, 6, 7, 0]


def test_resume_continues_with_the_units_it_fitted(prepared_corpus, tmp_path):
    config = config_file(tmp_path, TINY, log_every=1, eval_every=2, checkpoint_every=2)
    run = tmp_path / "run"
    train_classifier(prepared_corpus, run, config, steps=2)
    fitted = (run / UNITS_FILE).read_bytes()
    train_classifier(prepared_corpus, run, steps=4, resume=True)
    assert (run / UNITS_FILE).read_bytes() == fitted
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert load_state(run / "checkpoint")["step"] == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_unit": 8}, "n_unit: Extra inputs are not permitted"),
        ({"model": {"units": ["a", "b"]}, "n_units": 3}, "model.units differs"),
        ({"loss_weights": {"unit_ce": -1.0}}, "loss_weights.unit_ce"),
    ],
)
def test_bad_classifier_configs_fail_saying_why(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_classifier_config(config_file(tmp_path, TINY, **overrides), ["a", "b"])
