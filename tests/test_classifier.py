import math

import pytest
import torch
from conftest import tiny_spec

from wavenet import Classifier, ClassifierConfig, load_model, save_model


def tiny_classifier(**overrides) -> Classifier:
    torch.manual_seed(0)
    fields = dict(
        layers=4, dilation_cycle=4, channels=8, units=["a", "b", "c"], speakers=["x", "y"]
    )
    fields["feature_layers"] = [0, 3]
    return Classifier(ClassifierConfig(**{**fields, **overrides}), tiny_spec())


def test_outputs_follow_the_feature_frames():
    classifier = tiny_classifier()
    units, speakers = classifier(torch.rand(2, 100) - 0.5)
    assert units.shape == (2, 3, math.ceil(100 / 16)) and speakers.shape == (2, 2)
    features = classifier.features(torch.rand(2, 100) - 0.5)
    assert [f.shape for f in features] == [(2, 8, 100), (2, 8, 100)]


def test_without_speakers_there_is_no_speaker_head():
    units, speakers = tiny_classifier(speakers=[])(torch.zeros(1, 32))
    assert units.shape == (1, 3, 2) and speakers is None


def test_feature_layers_must_exist():
    with pytest.raises(ValueError, match="feature_layers"):
        tiny_classifier(feature_layers=[7])


def test_learns_to_tell_tones_apart():
    classifier = tiny_classifier().train()
    t = torch.arange(256) / 8000
    tones = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (300, 1200, 2500)])
    labels = torch.arange(3).unsqueeze(1).expand(3, 16)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        units, _ = classifier(tones)
        loss = torch.nn.functional.cross_entropy(units, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_checkpoint_round_trip(tmp_path):
    classifier = tiny_classifier()
    loaded = load_model(save_model(classifier, tmp_path / "classifier"))
    assert isinstance(loaded, Classifier) and loaded.config == classifier.config
    audio = torch.rand(1, 80) - 0.5
    assert torch.equal(loaded(audio)[0], classifier(audio)[0])
