import math

import torch
from conftest import tiny_spec

from training.units import fit_units, mfcc_from_mel


def tone_mel(frequency: float, seconds: float = 0.3):
    spec = tiny_spec()
    t = torch.arange(int(seconds * spec.sample_rate)) / spec.sample_rate
    return spec.extract(0.5 * torch.sin(2 * math.pi * frequency * t))


def test_mfcc_shape_and_first_coefficient_tracks_level():
    loud, quiet = tone_mel(500), tone_mel(500) - 3.0  # log-mel shifted: 3 nats quieter
    mfcc = mfcc_from_mel(loud)
    assert mfcc.shape == (39, loud.shape[-1])
    # The orthonormal DCT's first row is constant: a level shift moves c0 only.
    shift = mfcc_from_mel(loud)[:13] - mfcc_from_mel(quiet)[:13]
    torch.testing.assert_close(shift[0], torch.full_like(shift[0], 3.0 * math.sqrt(8)))
    torch.testing.assert_close(shift[1:], torch.zeros_like(shift[1:]), atol=1e-4, rtol=0)


def test_units_separate_different_sounds_and_are_deterministic():
    mels = [tone_mel(300), tone_mel(1500), tone_mel(3000)]
    model = fit_units(mels, n_units=3, seed=0)
    labels = [model.assign(mel) for mel in mels]
    # Steady tones: the middle frames of each tone share one unit, and the tones differ.
    middles = [torch.mode(label[3:-3]).values.item() for label in labels]
    assert len(set(middles)) == 3
    again = fit_units(mels, n_units=3, seed=0)
    assert all(torch.equal(model.assign(m), again.assign(m)) for m in mels)
