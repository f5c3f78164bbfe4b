"""`wavenet train-pitch` and the pitch report of `wavenet evaluate`: a short run lowers the
loss and scores the held-out split, the model loads with the corpus's PitchSpec, resume, and
a corpus whose F0 was tracked otherwise (or not at all) is refused, naming the setting."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import DATA
from distill_fixtures import CONFIGS, config_file

from training.dataset import load_prepared
from training.evaluate import evaluate, markdown_table
from training.monitor import read_metrics
from training.pitch_config import resolve_pitch_config
from training.state import load_state
from training.train_pitch import train_pitch
from wavenet import load_model
from wavenet.cli import main
from wavenet.pitch import PitchSpecError
from wavenet.pitch_model import PitchPredictor

TINY = "pitch_tiny.yaml"


@pytest.fixture(scope="module")
def trained(prepared_corpus, tmp_path_factory):
    """The tiny config's whole run (40 steps) through the CLI."""
    run = tmp_path_factory.mktemp("pitch") / "run"
    arguments = ["--data", str(prepared_corpus), "--out", str(run), "--device", "cpu"]
    assert main(["train-pitch", *arguments, "--config", str(CONFIGS / TINY)]) == 0
    return run


@pytest.fixture(scope="module")
def unseen_corpus(tmp_path_factory):
    """tests/data/corpus prepared with speaker slt kept out of training."""
    from training.prepare import prepare

    directory = tmp_path_factory.mktemp("unseen")
    config = directory / "prepare.yaml"
    config.write_text(yaml.safe_dump({"unseen_speakers": ["slt"], "val_fraction": 0.25}))
    prepare(DATA / "corpus", directory / "corpus", config)
    return directory / "corpus"


def copy_with_pitch(prepared, directory, **changes):
    """A copy of a prepared corpus whose pitch_spec.json has `changes`; None removes F0."""
    copy = shutil.copytree(prepared, directory / "corpus")
    spec_file = copy / "pitch_spec.json"
    if changes.get("f0") is None and "f0" in changes:
        spec_file.unlink()
        lines = (copy / "manifest.jsonl").read_text().splitlines()
        entries = [{**json.loads(line), "f0": None} for line in lines if line.strip()]
        (copy / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
        shutil.rmtree(copy / "f0")
    else:
        spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), **changes}))
    return copy


def test_a_short_run_lowers_the_loss_and_scores_the_held_out_split(trained):
    records = read_metrics(trained)
    evaluated = [r for r in records if "val_voicing_error" in r]
    assert [r["step"] for r in evaluated] == [20, 40]
    first, last = records[0], records[-1]
    assert last["voicing_bce"] < first["voicing_bce"]
    assert last["log_f0_l1"] < 0.7 * first["log_f0_l1"]
    assert evaluated[-1]["val_log_f0_l1"] < evaluated[0]["val_log_f0_l1"]
    for name in ("val_voicing_error", "val_gross_pitch_error"):
        assert 0 <= evaluated[-1][name] <= 1
    assert evaluated[-1]["val_median_cents"] >= 0


def test_the_model_loads_with_the_corpus_pitch_spec(trained, prepared_corpus):
    corpus = load_prepared(prepared_corpus)
    model = load_model(trained / "model")
    assert isinstance(model, PitchPredictor) and model.kind == "pitch"
    assert model.config.pitch == corpus.pitch and model.spec == corpus.spec
    assert model.config.channels == 16 and model.config.dilations == [1, 2, 4]
    extra = json.loads((trained / "model" / "config.json").read_text())["extra"]
    assert extra["step"] == 40
    saved = yaml.safe_load((trained / "config.yaml").read_text())
    assert saved["model"]["pitch"] == corpus.pitch.model_dump(mode="json")


def test_resume_continues_and_refuses_a_corpus_tracked_otherwise(prepared_corpus, tmp_path):
    config = config_file(tmp_path, TINY, log_every=1, eval_every=2, checkpoint_every=2)
    run = tmp_path / "run"
    train_pitch(prepared_corpus, run, config, steps=2)
    train_pitch(prepared_corpus, run, steps=4, resume=True)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert load_state(run / "checkpoint")["step"] == 4
    f0_min = load_prepared(prepared_corpus).pitch.f0_min
    other = copy_with_pitch(prepared_corpus, tmp_path, f0_min=f0_min + 10)
    with pytest.raises(PitchSpecError, match=rf"f0_min {f0_min} != {f0_min + 10}"):
        train_pitch(other, run, steps=6, resume=True)
    assert load_state(run / "checkpoint")["step"] == 4


def test_a_config_whose_pitch_spec_differs_from_the_corpus_is_refused(
    prepared_corpus, tmp_path, capsys
):
    f0_max = load_prepared(prepared_corpus).pitch.f0_max
    config = config_file(tmp_path, TINY, model={"channels": 8, "pitch": {"f0_max": f0_max - 100}})
    run = tmp_path / "run"
    arguments = ["--data", str(prepared_corpus), "--out", str(run), "--config", str(config)]
    assert main(["train-pitch", *arguments, "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "wavenet train-pitch: error:" in error and f"f0_max {f0_max - 100} != {f0_max}" in error
    assert not run.exists()


def test_a_corpus_without_f0_is_refused(prepared_corpus, tmp_path):
    bare = copy_with_pitch(prepared_corpus, tmp_path, f0=None)
    assert load_prepared(bare).pitch is None
    with pytest.raises(PitchSpecError, match="has no F0"):
        resolve_pitch_config(CONFIGS / TINY, None, bare)
    with pytest.raises(PitchSpecError, match="has no F0"):
        train_pitch(bare, tmp_path / "run", CONFIGS / TINY)


def test_evaluate_reports_both_held_out_splits_by_name(trained, unseen_corpus, tmp_path, capsys):
    out = tmp_path / "report.json"
    arguments = ["--model", str(trained / "model"), "--data", str(unseen_corpus)]
    assert main(["evaluate", *arguments, "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "pitch"
    rows = {row["split"]: row for row in report["splits"]}
    assert list(rows) == ["val", "unseen"]
    assert rows["unseen"]["speakers"] == ["slt"] and "slt" not in rows["val"]["speakers"]
    corpus = load_prepared(unseen_corpus)
    assert rows["unseen"]["frames"] == sum(u.frames for u in corpus.unseen)
    assert rows["val"]["utterances"] == len(corpus.val)
    for row in rows.values():
        assert 0 <= row["voicing_error"] <= 1 and 0 < row["voiced_frames"] < row["frames"]
    table = capsys.readouterr().out
    assert "| unseen (a speaker unseen in training) | slt |" in table
    assert "voicing error" in table and "gross pitch error" in table


def test_evaluate_scores_a_folder_of_audio_against_the_tracker(trained, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for wav in sorted((DATA / "corpus" / "awb").glob("*.wav"))[:2]:
        shutil.copy(wav, folder / wav.name)
    report = evaluate(trained / "model", folder, tmp_path / "report.json")
    (row,) = report["splits"]
    assert row["split"] == "folder" and row["utterances"] == 2 and row["voiced_frames"] > 0
    assert "folder" in markdown_table(report)
