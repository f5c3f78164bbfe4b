"""The pitch predictor: shapes, its receptive field, predict_f0's voicing and range, its
losses against their formulas, and its checkpoint (kind "pitch")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_spec
from pydantic import ValidationError

from wavenet import load_model, save_model
from wavenet.cli import main
from wavenet.pitch import PitchSpec
from wavenet.pitch_model import PitchPredictor, PitchPredictorConfig, log_f0_l1, voicing_bce

PITCH = PitchSpec(f0_min=60.0, f0_max=400.0)


def tiny_pitch_model(seed: int = 0, **overrides) -> PitchPredictor:
    """Eight channels, two blocks (dilations 1, 2): a receptive field of 9 frames."""
    torch.manual_seed(seed)
    fields = dict(channels=8, kernel_size=3, dilations=[1, 2], pitch=PITCH)
    return PitchPredictor(PitchPredictorConfig(**{**fields, **overrides}), tiny_spec()).eval()


def random_mel(batch: int = 2, frames: int = 20) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.randn(batch, 8, frames) * 2 - 5


def test_outputs_have_one_value_per_frame():
    model = tiny_pitch_model()
    voicing, log_f0 = model(random_mel(3, 11))
    assert voicing.shape == log_f0.shape == (3, 11)
    assert model.predict_f0(random_mel(3, 11)).shape == (3, 11)
    assert model.receptive_frames == 1 + 2 * (1 + 1 + 2) == 9
    assert model.receptive_field == 9 * 16
    assert model.config.speakers == []


def test_a_frame_reaches_exactly_its_receptive_field_on_both_sides():
    model = tiny_pitch_model()
    mel = random_mel(1, 21)
    changed = mel.clone()
    changed[..., 10] += 3.0
    moved = (model(changed)[0] != model(mel)[0])[0].nonzero().flatten().tolist()
    reach = (model.receptive_frames - 1) // 2
    assert moved == list(range(10 - reach, 10 + reach + 1))


def test_predict_f0_is_zero_where_unvoiced_and_in_range_where_voiced():
    model = tiny_pitch_model()
    voicing = torch.tensor([[-3.0, -0.1, 0.0, 0.1, 2.0, 5.0, 1.0, 4.0]])
    log_f0 = torch.log(torch.tensor([[200.0, 200.0, 200.0, 200.0, 30.0, 1000.0, 60.0, 123.0]]))
    model.forward = lambda mel: (voicing, log_f0)  # the network's outputs, set by hand
    f0 = model.predict_f0(random_mel(1, 8))
    expected = torch.tensor([[0.0, 0.0, 0.0, 200.0, 60.0, 400.0, 60.0, 123.0]])
    assert torch.allclose(f0, expected)


def test_predict_f0_of_a_random_network_keeps_to_the_rule():
    model = tiny_pitch_model()
    mel = random_mel(4, 50)
    voiced = model(mel)[0] > 0
    f0 = model.predict_f0(mel)
    assert (f0[~voiced] == 0).all()
    assert (f0[voiced] >= PITCH.f0_min).all() and (f0[voiced] <= PITCH.f0_max).all()


def test_an_untrained_model_starts_mid_range():
    model = tiny_pitch_model()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    _, log_f0 = model(random_mel())
    assert torch.allclose(log_f0.exp(), torch.full_like(log_f0, math.sqrt(60.0 * 400.0)))


def test_voicing_bce_is_the_binary_cross_entropy_of_the_voiced_frames():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    f0 = torch.tensor([[100.0, 0.0, 0.0, 220.0]])
    sig = torch.sigmoid(logits[0])
    expected = -(sig[0].log() + (1 - sig[1]).log() + (1 - sig[2]).log() + sig[3].log()) / 4
    assert voicing_bce(logits, f0) == pytest.approx(float(expected), rel=1e-6)


def test_log_f0_l1_averages_over_voiced_frames_only():
    f0 = torch.tensor([[100.0, 0.0, 200.0, 0.0]])
    log_f0 = torch.log(torch.tensor([[110.0, 5000.0, 100.0, 1.0]]))
    expected = (math.log(1.1) + math.log(2.0)) / 2
    assert log_f0_l1(log_f0, f0) == pytest.approx(expected, rel=1e-6)


def test_log_f0_l1_of_a_batch_without_voiced_frames_is_zero_with_zero_gradient():
    log_f0 = torch.randn(2, 5, requires_grad=True)
    loss = log_f0_l1(log_f0, torch.zeros(2, 5))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(log_f0.grad, torch.zeros(2, 5))


def test_a_mel_of_the_wrong_shape_is_refused_saying_why():
    with pytest.raises(ValueError, match=r"mel must be \(B, 8, frames\)"):
        tiny_pitch_model()(torch.zeros(1, 6, 10))
    with pytest.raises(ValueError, match=r"mel must be"):
        tiny_pitch_model()(torch.zeros(8, 10))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"kernel_size": 4}, "odd"), ({"dilations": [1, 0]}, ">= 1"), ({"layers": 3}, "extra")],
)
def test_bad_configs_are_refused_saying_why(overrides, message):
    with pytest.raises(ValidationError, match=message):
        PitchPredictorConfig(**overrides)


def test_checkpoint_round_trip_reproduces_predictions(tmp_path, capsys):
    model = tiny_pitch_model(seed=3)
    directory = save_model(model, tmp_path / "pitch", extra={"step": 5})
    loaded = load_model(directory)
    assert isinstance(loaded, PitchPredictor) and not loaded.training
    assert loaded.config == model.config and loaded.config.pitch == PITCH
    assert loaded.spec == model.spec
    mel = random_mel(2, 30)
    assert torch.equal(loaded(mel)[0], model(mel)[0]) and torch.equal(loaded(mel)[1], model(mel)[1])
    assert torch.equal(loaded.predict_f0(mel), model.predict_f0(mel))
    document = json.loads((directory / "config.json").read_text())
    assert document["kind"] == "pitch" and document["config"]["pitch"]["f0_max"] == 400.0
    assert main(["info", "--model", str(directory)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "pitch" and summary["receptive_field"] == 9 * 16
    assert summary["speakers"] == [] and summary["parameters"] == sum(
        p.numel() for p in model.parameters()
    )


def test_the_shipped_pitch_model_follows_the_tracker_on_the_fixture_clips():
    from conftest import DATA

    from training.pitch_metrics import pitch_scores
    from wavenet.audio import load_audio
    from wavenet.pitch import track_f0

    model = load_model(DATA.parents[1] / "models" / "default" / "pitch")
    assert model.kind == "pitch" and model.spec.sample_rate == 16000
    references, estimates = [], []
    for path in sorted((DATA / "corpus").glob("*/*.wav")):
        audio = load_audio(path, model.spec.sample_rate)
        references.append(track_f0(audio.numpy(), model.spec, model.config.pitch))
        estimates.append(model.predict_f0(model.spec.extract(audio)[None])[0].numpy())
    scores = pitch_scores(np.concatenate(references), np.concatenate(estimates))
    # Measured at shipping: voicing error 2.7%, GPE 0.3%, median 16 cents.
    assert scores["voicing_error"] < 0.1 and scores["gross_pitch_error"] < 0.05
    assert scores["median_cents"] < 50
